"""The command line `python -m nanogpt.attribution.cli`: generate, attribute, print, write HTML."""

import pytest

from nanogpt.attribution.cli import main
from nanogpt.attribution.result import Attribution


@pytest.fixture
def ckpt(smoke_ckpt):
    """The session's smoke checkpoint (tests/conftest.py)."""
    return smoke_ckpt


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_generates_attributes_prints_and_writes_the_html_and_the_result(ckpt, tmp_path, capsys):
    code, out, err = run(capsys, "--ckpt", ckpt, "--prompt", "ROMEO:", "--max-new-tokens", 12,
                         "--steps", 4, "--out-dir", tmp_path, "--save", tmp_path / "r.json", "--no-color")
    assert code == 0, err
    assert "delta" in out and "\x1b[" not in out
    page = (tmp_path / "attribution.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<script>" in page
    assert page.count("font-style: italic") == 6 + 1  # the prompt "ROMEO:", and the legend's sample
    result = Attribution.load(tmp_path / "r.json")
    assert result.targets.tolist() == list(range(6, 18))  # the generated characters only
    assert result.text.startswith("ROMEO:") and len(result.tokens) == 18
    assert result.settings["integration"] == "fixed" and "fixed 4-point" in out


def test_by_default_each_character_is_integrated_to_the_tolerance(ckpt, tmp_path, capsys):
    code, out, err = run(capsys, "--ckpt", ckpt, "--max-new-tokens", 10, "--html", tmp_path / "a.html",
                         "--save", tmp_path / "r.npz", "--no-color")
    assert code == 0 and "warning" not in err, err
    result = Attribution.load(tmp_path / "r.npz")
    assert result.settings["integration"] == "adaptive" and result.settings["tol"] == 0.05
    assert not result.capped.any() and not result.incomplete().any()
    assert "10 targets integrated to |delta| <= max(0.05 |dF|, 0.001)" in out and " n=" in out


def test_the_warning_names_the_characters_that_stopped_at_the_cap(ckpt, tmp_path, capsys):
    code, out, err = run(capsys, "--ckpt", ckpt, "--max-new-tokens", 10, "--html", tmp_path / "a.html",
                         "--tol", 1e-9, "--abs-tol", 0, "--steps", 2, "--max-steps", 8, "--no-color")
    assert code == 0 and err.startswith("warning: completeness: ") and err.count("\n") == 1
    assert "stopped at the cap of 8 steps" in err and "raise --max-steps" in err
    assert "stopped at the cap before the tolerance" in out  # and the list marks them


def test_faithfulness_prints_aopc_for_four_methods_and_the_sanity_check(ckpt, tmp_path, capsys):
    code, out, err = run(capsys, "--ckpt", ckpt, "--max-new-tokens", 5, "--html", tmp_path / "a.html",
                         "--steps", 4, "--faithfulness", "--curve-steps", 2, "--random-orders", 1)
    assert code == 0, err
    table = out.split("faithfulness over 5 characters")[1]
    for method in ("ig", "saliency", "grad-input", "occlusion", "random"):
        assert f"| {method} |" in table
    assert "Spearman vs randomized model" in table
    page = (tmp_path / "a.html").read_text(encoding="utf-8")  # the page shows the report too
    faith = page.split('class="faith"')[1]
    assert "deletion AOPC" in faith and faith.count("<svg") == 2 and "| ig |" not in faith
    for method in ("ig", "saliency", "grad-input", "occlusion", "random"):
        assert f">{method}</td>" in faith


def test_the_same_seed_gives_the_same_text_and_scores(ckpt, tmp_path, capsys):
    args = ("--ckpt", ckpt, "--max-new-tokens", 8, "--steps", 2, "--html", tmp_path / "a.html",
            "--seed", 7)
    assert run(capsys, *args) == run(capsys, *args)


def test_text_and_position_attribute_one_given_character(ckpt, tmp_path, capsys):
    code, out, err = run(capsys, "--ckpt", ckpt, "--text", "ROMEO: hi", "--position", 4,
                         "--method", "saliency", "--baseline", " ", "--html", tmp_path / "x.html",
                         "--save", tmp_path / "r.npz")
    assert code == 0, err
    result = Attribution.load(tmp_path / "r.npz")
    assert result.targets.tolist() == [4] and result.settings["baseline"] == " "
    assert result.settings["method"] == "saliency"


@pytest.mark.parametrize("argv, message", [
    (["--text", "héllo"], "not in the vocabulary"),
    (["--text", ""], "--text is empty"),
    (["--steps", 0], "--steps: must be at least 1"),
    (["--tol", -1], "--tol: must be a finite number above 0"),
    (["--top", -2], "--top: must be at least 1"),
    (["--seed", 2**70], "--seed: must be between 0 and 2^63 - 1"),
    (["--device", "tpu"], "--device: must be auto, cpu, cuda, cuda:N or mps"),
    (["--max-new-tokens", 10**9], "--max-new-tokens: must be between 0 and 1,000,000"),
    (["--max-steps", 8], "max steps (8) must be at least the first pieces' points (4 x 4)"),
    (["--faithfulness", "--curve-steps", 0], "--curve-steps"),
    (["--text", "ab", "--position", 5], "target positions must lie in 1..1"),
    (["--baseline", "xy"], "baseline must be"),
    (["--method", "lime"], "invalid choice"),
])
def test_mistakes_are_one_line_errors_with_status_2(ckpt, tmp_path, capsys, argv, message):
    code, out, err = run(capsys, "--ckpt", ckpt, "--html", tmp_path / "x.html",
                         "--max-new-tokens", 3, *argv)
    assert code == 2 and err.startswith("error: ") and message in err
    assert err.count("\n") == 1


def test_a_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    code, out, err = run(capsys, "--ckpt", tmp_path / "nope.pt")
    assert code == 2 and err.startswith("error: no checkpoint at") and err.count("\n") == 1


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "(default: gauss-legendre)" in out and "(default: 1024)" in out
    assert "on unless --steps is given alone" in " ".join(out.split())


def test_the_default_baseline_is_zero_with_a_position_table_and_the_mean_with_rotary_positions(
        ckpt, tmp_path, capsys):
    # From zero, a rotary model's path only rescales its input, which the first LayerNorm ignores:
    # nearly all of dF happens next to the baseline (on the make-train model: 288 points per
    # character against 24 from the mean).
    from nanogpt.config import preset
    from nanogpt.train import train

    rotary = train(preset("smoke", position="rotary", max_iters=2, eval_interval=2, eval_iters=1,
                          out_dir=str(tmp_path / "rot")), progress=False, quiet=True)
    for path, want in ((ckpt, "zero"), (f"{rotary['out_dir']}/best.pt", "mean")):
        code, out, err = run(capsys, "--ckpt", path, "--max-new-tokens", 4, "--steps", 2,
                             "--html", tmp_path / "a.html", "--save", tmp_path / "r.npz", "--no-color")
        assert code == 0, err
        assert Attribution.load(tmp_path / "r.npz").settings["baseline"] == want
