import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nanogpt.config import PRESETS, preset
from nanogpt.device import pick_device
from nanogpt.errors import UserError
from nanogpt.optim import make_optimizer
from nanogpt.precision import autocast_for, weights_dtype
from nanogpt.train import lr_at, main, set_up, train

ROOT = Path(__file__).resolve().parents[1]
# A GPT small enough that a step takes milliseconds; float64 where runs are compared exactly.
TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, eval_iters=2, log_interval=1)
TINY_FLAGS = ["--preset", "smoke", "--n-layer", "1", "--n-embd", "16", "--block-size", "16",
              "--batch-size", "4", "--eval-iters", "2", "--log-interval", "1", "--dtype", "float64",
              "--device", "cpu"]


@pytest.fixture(scope="module")
def small_text(tmp_path_factory, shakespeare):
    """The first 60,000 characters of Tiny Shakespeare: the text form, at a tenth of the cost."""
    path = tmp_path_factory.mktemp("data") / "small.txt"
    path.write_text(shakespeare[:60_000])
    return str(path)


def tiny(out_dir, **kw):
    return preset("smoke", **{**TINY, "out_dir": str(out_dir), **kw})


def records(out_dir, kind="train"):
    lines = (Path(out_dir) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def losses(out_dir):
    return {r["iter"]: r["loss"] for r in records(out_dir)}


def start(args, **kw):
    """`python -m nanogpt.train ARGS` in a child process whose printed lines we can read."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "nanogpt.train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, **kw)


def read_until(proc, words):
    """Lines the child prints, up to the first holding `words` (blocks on the pipe, no sleeping)."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if words in line:
            return seen
    raise AssertionError(f"the child ended without printing {words!r}:\n{''.join(seen)}")


# ----------------------------------------------------------------------------- the loop


def test_smoke_run_learns_and_writes_its_files(tmp_path):
    result = train(tiny(tmp_path, max_iters=60, eval_interval=30, dtype="float32"), progress=False)
    evals = records(tmp_path, "eval")
    assert evals[0]["iter"] == 0 and abs(evals[0]["val_loss"] - math.log(65)) < 0.3
    assert result["val_loss"] < evals[0]["val_loss"] - 0.5  # it learned something
    assert result["iters"] == 60 and result["out_dir"] == str(tmp_path)
    assert {"train_loss", "best_val_loss", "seconds"} <= set(result)
    for name in ("last.pt", "best.pt", "metrics.jsonl", "loss.png"):
        assert (tmp_path / name).is_file()
    assert all(r["grad_norm"] > 0 for r in records(tmp_path))  # the norm before clipping is logged


def test_evaluating_does_not_change_the_training_batches(tmp_path):
    train(tiny(tmp_path / "often", max_iters=8, eval_interval=1, dropout=0.1, dtype="float64"),
          progress=False)
    train(tiny(tmp_path / "never", max_iters=8, eval_interval=1000, dropout=0.1, dtype="float64"),
          progress=False)
    assert losses(tmp_path / "often") == losses(tmp_path / "never")


def test_resume_after_sigkill_continues_exactly(tmp_path):
    args = TINY_FLAGS + ["--max-iters", "120", "--eval-interval", "1000", "--save-interval", "10",
                         "--dropout", "0.1"]
    train(tiny(tmp_path / "whole", max_iters=120, eval_interval=1000, save_interval=10, dropout=0.1,
               dtype="float64", device="cpu"), progress=False)

    child = start(args + ["--out-dir", str(tmp_path / "killed")])
    read_until(child, "saved last.pt at iter 20")
    child.send_signal(signal.SIGKILL)  # a real kill: no chance to save anything more
    child.wait()
    killed_at = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["iter"]
    assert 20 <= killed_at < 120

    train(tiny(tmp_path / "killed", resume=True), progress=False)  # the saved settings come back
    whole, resumed = losses(tmp_path / "whole"), losses(tmp_path / "killed")
    assert sorted(resumed) == sorted(whole) == list(range(1, 121))
    assert all(abs(whole[i] - resumed[i]) < 1e-9 for i in whole)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_saves_last_pt_and_stops(tmp_path, sig):
    child = start(TINY_FLAGS + ["--max-iters", "100000", "--eval-interval", "100000",
                                "--out-dir", str(tmp_path)])
    read_until(child, "iter 0: train")  # the loop is running
    child.send_signal(sig)
    out = child.communicate()[0]
    assert child.returncode == 130
    stopped_at = int(out.split("interrupted at iter ")[1].split(":")[0])
    assert torch.load(tmp_path / "last.pt", weights_only=True)["iter"] == stopped_at


def test_diverging_loss_stops_and_keeps_best_pt(tmp_path, monkeypatch):
    import nanogpt.train

    # a sane run until iter 10 (best.pt written at 5 and 10), then a learning rate that blows it up
    sane = nanogpt.train.lr_at
    monkeypatch.setattr(nanogpt.train, "lr_at", lambda it, cfg: sane(it, cfg) if it < 10 else 1e30)
    saved = {}
    real_save = nanogpt.train.save_checkpoint

    def save(ckpt, path):
        real_save(ckpt, path)
        saved[Path(path).name] = Path(path).read_bytes()

    monkeypatch.setattr(nanogpt.train, "save_checkpoint", save)
    with pytest.raises(UserError, match="diverged"):
        train(tiny(tmp_path, max_iters=50, eval_interval=5, warmup_iters=0, grad_clip=0.0), progress=False)
    assert (tmp_path / "best.pt").read_bytes() == saved["best.pt"]  # the last one written before NaN
    assert torch.load(tmp_path / "best.pt", weights_only=True)["iter"] <= 10


def test_a_fresh_run_keeps_every_earlier_run_in_its_own_folder(tmp_path, capsys):
    for seed in (1, 2, 3):  # the recipe: three fresh runs into one folder
        train(tiny(tmp_path, max_iters=4, eval_interval=2, seed=seed), progress=False)
    kept = sorted((tmp_path / "previous").iterdir())
    assert len(kept) == 2 and "the earlier run's files are kept in" in capsys.readouterr().out
    seeds = [torch.load(d / "last.pt", weights_only=True)["config"]["seed"] for d in kept]
    assert sorted(seeds) == [1, 2]
    assert torch.load(tmp_path / "last.pt", weights_only=True)["config"]["seed"] == 3
    for d in kept:
        assert {"best.pt", "last.pt", "metrics.jsonl", "loss.png"} <= {p.name for p in d.iterdir()}


def test_a_fresh_run_that_fails_to_start_moves_nothing(tmp_path):
    run = tmp_path / "run"
    train(tiny(run, max_iters=4, eval_interval=2), progress=False)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    (tmp_path / "ten.txt").write_text("ten chars!")  # the recipe: data too short to train on
    with pytest.raises(UserError, match="fewer than block_size"):
        train(tiny(run, data=str(tmp_path / "ten.txt")), progress=False)
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert after == before and not (run / "previous").exists() and not (run / ".lock").exists()


def test_a_diverging_fresh_run_keeps_the_earlier_runs_files(tmp_path):
    train(tiny(tmp_path, max_iters=4, eval_interval=2), progress=False)
    earlier = (tmp_path / "best.pt").read_bytes()
    with pytest.raises(UserError, match="diverged and stopped; this run wrote no best.pt"):
        train(tiny(tmp_path, max_iters=50, eval_interval=5, lr=1e30, min_lr=0.0, warmup_iters=0,
                   grad_clip=0.0), progress=False)
    (kept,) = (tmp_path / "previous").iterdir()
    assert (kept / "best.pt").read_bytes() == earlier


def test_a_folder_a_live_run_holds_is_refused_and_a_dead_runs_lock_taken_over(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tmp_path.mkdir(exist_ok=True)
        (tmp_path / ".lock").write_text(f"{other.pid} {__import__('socket').gethostname()}\n")
        with pytest.raises(UserError, match=f"another run \\(process {other.pid}\\) is writing there"):
            train(tiny(tmp_path, max_iters=2), progress=False)
    finally:
        other.kill()
        other.wait()
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half a save")  # what a killed save leaves
    train(tiny(tmp_path, max_iters=2, eval_interval=2), progress=False)  # the dead run's lock: taken over
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / ".lock").exists()


def test_a_full_disk_is_named_and_the_previous_checkpoint_kept(tmp_path, monkeypatch):
    import nanogpt.checkpoint

    train(tiny(tmp_path, max_iters=2, eval_interval=2), progress=False)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    before = (tmp_path / "last.pt").read_bytes()

    def full(obj, f):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    monkeypatch.setattr(nanogpt.checkpoint.torch, "save", full)
    with pytest.raises(UserError, match="disk full: could not write .*last.pt"):
        nanogpt.checkpoint.save_checkpoint(ckpt, tmp_path / "last.pt")
    assert (tmp_path / "last.pt").read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


def test_a_signal_inside_a_save_waits_for_the_save(tmp_path):
    from nanogpt.interrupt import signals_deferred

    done = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the save finished")
    assert done == ["the save finished"]


@pytest.mark.parametrize("where", ["a file", "inside a file"])
def test_an_out_dir_that_cannot_be_a_folder_is_a_one_line_error(tmp_path, where, capsys):
    (tmp_path / "f").write_text("not a folder")
    out = tmp_path / "f" if where == "a file" else tmp_path / "f" / "run"
    assert main([*TINY_FLAGS, "--max-iters", "1", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out-dir") and err.count("\n") == 1


def test_a_resumed_run_names_saved_settings_it_does_not_know(tmp_path, capsys):
    from nanogpt.checkpoint import load_checkpoint, save_checkpoint

    train(tiny(tmp_path, max_iters=2, eval_interval=2), progress=False)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    ckpt["config"]["rotary"] = True  # a setting of some other version
    save_checkpoint(ckpt, tmp_path / "last.pt")
    capsys.readouterr()
    train(tiny(tmp_path, resume=True, max_iters=3), progress=False)
    assert "does not know; ignored: rotary" in capsys.readouterr().out


def test_two_processes_match_one_process_with_grad_accum(tmp_path):
    # torchrun starts 2 CPU processes (gloo); each computes one of the two micro-batches
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "nanogpt.train", *TINY_FLAGS, "--max-iters", "6", "--eval-interval", "3",
           "--grad-accum", "2", "--threads", "1", "--out-dir", str(tmp_path / "ddp")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 processes" in done.stdout and done.stdout.count("iter 3: train") == 1  # rank 0 speaks
    train(tiny(tmp_path / "one", max_iters=6, eval_interval=3, grad_accum=2, dtype="float64"),
          progress=False)
    ddp, one = losses(tmp_path / "ddp"), losses(tmp_path / "one")
    assert sorted(ddp) == sorted(one) == list(range(1, 7))
    assert all(abs(ddp[i] - one[i]) < 1e-4 for i in one)
    ddp_val = [r["val_loss"] for r in records(tmp_path / "ddp", "eval")]
    one_val = [r["val_loss"] for r in records(tmp_path / "one", "eval")]
    assert ddp_val == pytest.approx(one_val, abs=1e-4)


def test_gpt2_tokens_train_with_tied_weights(tmp_path, small_text):
    result = train(tiny(tmp_path, data=small_text, tokenizer="gpt2", tie_weights=True, max_iters=3,
                        eval_interval=3),
                   progress=False)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["tokenizer"] == {"kind": "gpt2"} and ckpt["model_config"]["vocab_size"] == 50257
    assert math.isfinite(result["val_loss"])


@pytest.mark.parametrize("stage, data", [("mlp", "text"), ("mlp", "names"), ("bigram", "text"),
                                         ("bigram", "names")])
def test_every_stage_trains_through_the_same_loop(tmp_path, small_text, stage, data):
    pytest.importorskip(f"nanogpt.{stage}")
    cfg = preset(stage, data=small_text if data == "text" else data, max_iters=30, eval_interval=15,
                 eval_iters=2, log_interval=5, batch_size=16, out_dir=str(tmp_path),
                 **({"n_hidden": 32} if stage == "mlp" else {}))
    result = train(cfg, progress=False)
    first = records(tmp_path, "eval")[0]["val_loss"]
    assert result["val_loss"] < first  # the final losses are on the full splits
    assert torch.load(tmp_path / "best.pt", weights_only=True)["stage"] == stage


def test_a_confident_init_is_warned_about(tmp_path, capsys):
    pytest.importorskip("nanogpt.mlp")
    train(preset("mlp", data="names", init="naive", n_hidden=16, max_iters=1, eval_iters=1,
                 out_dir=str(tmp_path)), progress=False)
    assert "warning: the loss at init" in capsys.readouterr().out


def test_diagnostics_hook_into_the_loop(tmp_path):
    pytest.importorskip("nanogpt.diagnostics.monitor")
    train(tiny(tmp_path, max_iters=4, eval_interval=4, diag=True, diag_every=2), progress=False)
    assert (tmp_path / "diagnostics.npz").is_file() and (tmp_path / "health.txt").is_file()


def test_time_budget_sets_max_iters(tmp_path):
    result = train(tiny(tmp_path, max_iters=10**6, max_minutes=0.05, eval_interval=10**6), progress=False)
    budget = records(tmp_path, "budget")
    assert len(budget) == 1 and result["iters"] == budget[0]["max_iters"] < 10**6


def test_time_budget_is_refitted_at_every_evaluation(tmp_path):
    result = train(tiny(tmp_path, max_iters=10**6, max_minutes=0.1, eval_interval=200, eval_iters=20),
                   progress=False)
    budget = records(tmp_path, "budget")
    evals = [r["iter"] for r in records(tmp_path, "eval")]
    refit_at = [i for i in evals if budget[0]["iter"] < i < result["iters"]]
    assert [r["iter"] for r in budget[1:]] == refit_at and len(refit_at) >= 1
    assert result["iters"] == budget[-1]["max_iters"]


# ----------------------------------------------------------------------------- the pieces


def test_learning_rate_schedules():
    cfg = preset("smoke", lr=1.0, min_lr=0.1, warmup_iters=10, max_iters=110)
    assert lr_at(0, cfg) == pytest.approx(1 / 11) and lr_at(10, cfg) == 1.0
    assert lr_at(60, cfg) == pytest.approx(0.55) and lr_at(110, cfg) == pytest.approx(0.1)
    step = preset("mlp", lr=0.1, warmup_iters=0, max_iters=100, step_decay_at=0.75)
    assert lr_at(74, step) == 0.1 and lr_at(75, step) == pytest.approx(0.01)
    wsd = preset("smoke", lr=1.0, min_lr=0.1, warmup_iters=10, max_iters=110, lr_schedule="wsd",
                 step_decay_at=0.5)
    assert lr_at(10, wsd) == 1.0 and lr_at(55, wsd) == 1.0  # flat until half way
    assert lr_at(82.5, wsd) == pytest.approx(0.55) and lr_at(110, wsd) == pytest.approx(0.1)  # then a line


def test_weight_decay_only_on_matrices():
    from nanogpt.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4, bias=True))
    opt = make_optimizer(model, preset("smoke", weight_decay=0.1), "cpu")
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and all(p.dim() == 1 for p in plain["params"])


def test_device_is_picked_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == "cuda" and pick_device("cuda:1") == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto") == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == "cpu"
    with pytest.raises(UserError, match="CUDA is not available"):
        pick_device("cuda")


def test_cpu_trains_in_float32_unless_bfloat16_is_asked_for():
    dtype = PRESETS["smoke"].dtype
    assert weights_dtype(dtype) == torch.float32
    assert "nullcontext" in type(autocast_for(dtype, "cpu")).__name__
    assert isinstance(autocast_for("bfloat16", "cpu"), torch.autocast)
    assert weights_dtype("bfloat16") == torch.float32


def test_a_plain_resume_notes_only_the_flags_the_saved_run_overrides(tmp_path, capsys):
    # --max-minutes rewrites the saved max_iters; the user never typed it, so no note about it
    train(tiny(tmp_path, max_iters=10**6, max_minutes=0.02, eval_interval=10**6), progress=False)
    capsys.readouterr()
    for flags, note in (({}, None), ({"lr": 0.5}, "ignored: lr=0.5")):
        setup = set_up(tiny(tmp_path, max_minutes=0.02, eval_interval=10**6, resume=True, **flags),
                       progress=False)
        setup.log.close()
        out = capsys.readouterr().out
        assert ("ignored" not in out) if note is None else (note in out)


@pytest.mark.skipif(shutil.which("cc") is None, reason="torch.compile on a CPU needs a C compiler")
def test_compiled_training_matches_eager_and_saves_plain_weights(tmp_path):
    runs = {}
    for name, compiled in (("eager", "off"), ("compiled", "on")):
        train(tiny(tmp_path / name, max_iters=3, eval_interval=1000, compile=compiled, device="cpu"),
              progress=False)
        runs[name] = losses(tmp_path / name)
    assert runs["compiled"].keys() == runs["eager"].keys()
    assert all(abs(runs["compiled"][i] - runs["eager"][i]) < 1e-4 for i in runs["eager"])
    state = torch.load(tmp_path / "compiled" / "last.pt", weights_only=True)["model"]
    assert not any(k.startswith("_orig_mod.") for k in state)


def bench_train():
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "bench" / "bench_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equal_time_bench_prints_one_row_per_variant(capsys):
    bench = bench_train()
    bench.main(["--no-speed", "--equal-time", "--presets", "smoke", "--variants", "default", "muon",
                "optimizer=muon,muon_lr=0.05,max_iters=20,seed=2"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| smoke")]
    assert [r.split(" | ")[1] for r in rows] == ["the preset as it is", "+ muon (lr 0.02)",
                                                  "+ optimizer=muon,muon_lr=0.05,max_iters=20,seed=2"]
    assert rows[0].split(" | ")[7] == ""  # each row against the row above it
    assert all(r.split(" | ")[7].startswith(("+", "-")) for r in rows[1:])
    assert rows[2].split(" | ")[4] == "20"  # its steps
    assert [r.split(" | ")[3] for r in rows] == ["1337", "1337", "2"]  # and the seed it ran with
    assert all(float(r.split(" | ")[9].rstrip(" |")) > 0 for r in rows)  # and its final train loss


def test_equal_time_bench_trains_each_row_once_per_seed_and_shows_the_mean(capsys):
    bench_train().main(["--no-speed", "--equal-time", "--presets", "smoke", "--seeds", "1", "2",
                        "--variants", "max_iters=6", "max_iters=8"])
    rows = [r.split(" | ") for r in capsys.readouterr().out.splitlines() if r.startswith("| smoke")]
    assert [r[3] for r in rows] == ["1 / 2", "1 / 2"] and [r[4] for r in rows] == ["6 / 6", "8 / 8"]
    for r in rows:
        vals = [float(v) for v in r[5].split(" / ")]
        assert vals[0] != vals[1] and float(r[6]) == pytest.approx(sum(vals) / 2, abs=1e-4)
    assert float(rows[1][7]) == pytest.approx(float(rows[1][6]) - float(rows[0][6]), abs=2e-4)


def test_the_default_rows_are_each_presets_own_ladder():
    bench = bench_train()
    assert [label for label, _ in bench.rows("gpt-cpu-fast", ["ladder"])][-1] == "the preset as it is"
    ladder = [overrides for _, overrides in bench.rows("gpt-cpu", ["ladder"])]
    assert ladder[0]["position"] == "learned" and ladder[1]["position"] == "rotary"
    assert ladder[2]["min_lr"] > 0 and ladder[3]["min_lr"] == 0  # the floor before, then 0
    assert preset("gpt-cpu", **ladder[3]) == preset("gpt-cpu", dtype="float32")  # the preset in float32
    assert ladder[-1] == {}


def test_equal_time_budgets_are_one_for_all_or_one_per_preset(capsys):
    bench = bench_train()
    presets = ["gpt-cpu-fast", "gpt-cpu"]
    assert bench.budgets(presets, None) == [PRESETS[name].max_minutes for name in presets]
    assert bench.budgets(presets, [2.0]) == [2.0, 2.0]
    assert bench.budgets(presets, [1.67, 10]) == [1.67, 10]  # the issue's `--minutes 1.67 10`
    with pytest.raises(SystemExit) as e:
        bench.main(["--equal-time", "--presets", *presets, "--minutes", "1", "2", "3"])
    assert e.value.code == 2 and "one per preset (2), not 3" in capsys.readouterr().err


@pytest.mark.parametrize("spec, words", [("nope", "unknown variant"), ("lr=fast", "lr takes a float"),
                                         ("rotary=1", "no setting 'rotary'")])
def test_equal_time_bench_refuses_a_bad_variant_before_training(spec, words, capsys):
    with pytest.raises(SystemExit) as e:
        bench_train().main(["--equal-time", "--variants", spec])
    assert e.value.code == 2 and words in capsys.readouterr().err


def test_a_quiet_run_prints_only_warnings(tmp_path, capsys):
    train(tiny(tmp_path, max_iters=4, eval_interval=2, diag=True, diag_every=2), progress=False, quiet=True)
    assert capsys.readouterr().out == ""
    pytest.importorskip("nanogpt.mlp")
    train(preset("mlp", data="names", init="naive", n_hidden=16, max_iters=1, eval_iters=1,
                 out_dir=str(tmp_path / "mlp")), progress=False, quiet=True)
    assert capsys.readouterr().out.startswith("warning: the loss at init")


def test_a_second_run_into_a_folder_a_running_one_writes_is_refused(tmp_path, capsys):
    child = start(TINY_FLAGS + ["--max-iters", "100000", "--eval-interval", "100000",
                                "--out-dir", str(tmp_path)])
    try:
        read_until(child, "iter 0: train")  # the first run holds the folder
        assert main([*TINY_FLAGS, "--max-iters", "2", "--out-dir", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert f"another run (process {child.pid}) is writing there" in err and err.count("\n") == 1
    finally:
        child.send_signal(signal.SIGINT)
        child.communicate()
    assert child.returncode == 130 and (tmp_path / "last.pt").is_file()
    assert not (tmp_path / "previous").exists()  # the refused run moved nothing
