"""Bad inputs and damaged files, as a user (or a crashed machine) produces them: each ends in one
line, `error: ...` on stderr, exit status 2, with the word that says what is wrong, never a
traceback. (The data-loss cases, run folders and signals are in test_train.py.)"""

import copy
import os

import pytest
import torch

from nanogpt import backprop, datasets, sample
from nanogpt import train as engine
from nanogpt.attribution import cli as attribution_cli
from nanogpt.checkpoint import load_checkpoint, save_checkpoint
from nanogpt.course import exercises, ladder

BIG = str(2**70)  # a seed no generator takes


def one_line_error(capsys, status) -> str:
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("argv, word", [
    (["--seed", BIG], "--seed must be between 0 and 2^63 - 1"),
    (["--seed", "-1"], "--seed must be between 0 and 2^63 - 1"),
    (["--device", "tpu"], "--device must be auto, cpu, cuda, cuda:N or mps"),
    (["--device", "CPU"], "--device must be"),
    (["--device", "meta"], "--device must be"),
    (["--lr", "nan"], "--lr must be a positive number"),
    (["--max-iters", "0"], "--max-iters must be at least 1"),
    (["--n-head", "3"], "must be divisible by --n-head"),
    (["--dropout", "1"], "--dropout must be in [0, 1)"),
    (["--threads", "-1"], "--threads must be a finite number >= 0"),
    (["--data", "no-such-file.txt"], "no dataset or file named"),
    (["--max-iters", "ten"], "invalid int value"),
])
def test_train_refuses_settings_that_cannot_work(tmp_path, capsys, argv, word):
    status = engine.main(["--preset", "smoke", "--out-dir", str(tmp_path), *argv])
    assert word in one_line_error(capsys, status)


def test_train_with_more_threads_than_cores_runs_on_the_cores(tmp_path, capsys):
    assert engine.main(["--preset", "smoke", "--max-iters", "2", "--threads", "100000",
                        "--out-dir", str(tmp_path)]) == 0
    assert f"{torch.get_num_threads()} thread" in capsys.readouterr().out


def test_a_tiny_budget_is_warned_about(tmp_path, capsys):
    engine.main(["--preset", "smoke", "--max-minutes", "0.0001", "--max-iters", "70",
                 "--out-dir", str(tmp_path)])
    assert "warning: --max-minutes 0.0001 is" in capsys.readouterr().out


def test_resuming_a_run_of_another_preset_says_so(tmp_path, capsys):
    assert engine.main(["--preset", "bigram", "--max-iters", "2", "--eval-interval", "2",
                        "--out-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert engine.main(["--preset", "smoke", "--resume", "--max-iters", "3",
                        "--out-dir", str(tmp_path)]) == 0
    assert "last.pt is a run of the bigram preset: its saved settings are used, not smoke's" in \
        capsys.readouterr().out


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert engine.main(["--preset", "smoke", "--max-iters", "2", "--eval-interval", "2",
                        "--out-dir", str(out)]) == 0
    return out / "last.pt"


DAMAGE = {
    "format as a string": lambda c: c.update(format="1"),
    "format None": lambda c: c.update(format=None),
    "tokenizer without chars": lambda c: c["tokenizer"].pop("chars"),
    "tokenizer not a dict": lambda c: c.update(tokenizer="char"),
    "model_config a list": lambda c: c.update(model_config=[4, 2]),
    "n_head a string": lambda c: c["model_config"].update(n_head="two"),
    "weights of another shape": lambda c: c["model"].update({"lm_head.weight": torch.zeros(3, 3)}),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("command", ["sample", "attribute"])
def test_a_checkpoint_with_edited_fields_is_named_as_damaged(ckpt, tmp_path, capsys, damage, command):
    c = copy.deepcopy(load_checkpoint(ckpt))
    DAMAGE[damage](c)
    bad = tmp_path / "bad.pt"
    save_checkpoint(c, bad)
    main = sample.main if command == "sample" else attribution_cli.main
    html = ["--html", str(tmp_path / "a.html")] if command == "attribute" else []
    err = one_line_error(capsys, main(["--ckpt", str(bad), "--max-new-tokens", "3", *html]))
    assert str(bad) in err and ("damaged" in err or "do not fit" in err)


@pytest.mark.parametrize("argv, word", [
    (["--seed", BIG], "--seed: must be between 0 and 2^63 - 1"),
    (["--device", "tpu"], "--device: must be auto, cpu, cuda, cuda:N or mps"),
    (["--device", "meta"], "--device: must be"),
    (["--max-new-tokens", "1000000000"], "--max-new-tokens: must be between 0 and 1,000,000"),
    (["--num-samples", "0"], "--num-samples: must be at least 1"),
    (["--top-k", "0"], "--top-k: must be at least 1"),
    (["--temperature", "0"], "--temperature: must be a finite number above 0"),
    (["--prompt-file", "nowhere.txt"], "cannot read --prompt-file"),
])
def test_sample_refuses_bad_flags(ckpt, capsys, argv, word):
    assert word in one_line_error(capsys, sample.main(["--ckpt", str(ckpt), *argv]))


@pytest.mark.parametrize("where", ["a folder", "a file as the folder", "an unwritable folder"])
def test_attribute_checks_its_output_paths_before_the_work(ckpt, tmp_path, capsys, monkeypatch, where):
    import nanogpt.attribution.cli as module

    monkeypatch.setattr(module, "attribute_ids", lambda *a, **k: pytest.fail("the work started"))
    (tmp_path / "file").write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if where == "an unwritable folder" and os.access(locked, os.W_OK):
        locked.chmod(0o700)
        pytest.skip("this user (root) writes into a read-only folder: nothing to prove")
    flags = {"a folder": ["--html", str(tmp_path)],
             "a file as the folder": ["--out-dir", str(tmp_path / "file")],
             "an unwritable folder": ["--html", str(locked / "a.html")]}[where]
    try:
        status = attribution_cli.main(["--ckpt", str(ckpt), "--max-new-tokens", "3", *flags])
        one_line_error(capsys, status)
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("argv, word", [
    (["--top", "-2"], "--top: must be at least 1"),
    (["--seed", BIG], "--seed: must be between"),
    (["--device", "CPU"], "--device: must be"),
    (["--steps", "0"], "--steps: must be at least 1"),
])
def test_attribute_refuses_bad_flags(ckpt, tmp_path, capsys, argv, word):
    status = attribution_cli.main(["--ckpt", str(ckpt), "--html", str(tmp_path / "a.html"), *argv])
    assert word in one_line_error(capsys, status)


@pytest.mark.parametrize("argv, word", [
    (["--lr", "nan"], "--lr: must be a finite number above 0"),
    (["--lr", "-1"], "--lr: must be a finite number above 0"),
    (["--n-hidden", "0"], "--n-hidden: must be at least 1"),
    (["--steps", "0"], "--steps: must be at least 1"),
    (["--seed", BIG], "--seed: must be between"),
])
def test_backprop_refuses_bad_flags(capsys, argv, word):
    assert word in one_line_error(capsys, backprop.main(argv))


def test_ladder_out_as_a_folder_is_refused_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ladder, "build_tables", lambda args: pytest.fail("the work started"))
    err = one_line_error(capsys, ladder.main(["--rows", "names-naive", "--out", str(tmp_path)]))
    assert "--out" in err and "is a folder" in err


def test_ladder_reads_a_gpt_metrics_file_cut_off_by_a_kill(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        '{"kind": "eval", "iter": 0, "time": 1.0}\n'
        '{"kind": "final", "iter": 5, "train_loss": 1.5, "val_loss": 1.6, "time": 9.0}\n{"kind": "tr')
    row = ladder.gpt_row(str(tmp_path))
    assert (row.train, row.val) == (1.5, 1.6)


def test_make_data_with_a_corrupted_file_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "names.txt").write_text("not the names\n")
    monkeypatch.setenv("NANOGPT_DATA_DIR", str(tmp_path))
    err = one_line_error(capsys, datasets.main(["names"]))
    assert "names.txt is corrupted" in err
    assert "no dataset named" in one_line_error(capsys, datasets.main(["novels"]))


def test_check_refuses_a_bad_timeout(capsys):
    status = exercises.main(["check", "01", "--timeout", "0"])
    assert "--timeout: must be at least 1" in one_line_error(capsys, status)
