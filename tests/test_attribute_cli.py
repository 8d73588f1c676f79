"""The command line `python -m nanogpt.attribute`: generate, attribute, print, write HTML."""

import pytest

from nanogpt.attribute import main
from nanogpt.attribution import Attribution


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
    result = Attribution.load(tmp_path / "r.json")
    assert result.targets.tolist() == list(range(6, 18))  # the generated characters only
    assert result.text.startswith("ROMEO:") and len(result.tokens) == 18


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
    (["--steps", 0], "steps must be at least 1"),
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
    assert e.value.code == 0 and "(default: gauss-legendre)" in capsys.readouterr().out
