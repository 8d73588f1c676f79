"""The committed solution notebooks are clean full runs, named in course order; the smoke switch works.

Each lecture's smoke run is in tests/test_exercises.py, which drives it cell by cell to prove that
every exercise's check fails on the stub and passes on the solution (one execution per lecture)."""

import json

import pytest

from nanogpt.course.exercises import main
from nanogpt.course.notebooks import LECTURES, SOLUTIONS, banner, lecture_paths, pick
from nanogpt.errors import UserError

LECTURE_PATHS = lecture_paths()
EXPECTED = ["00_micrograd", "01_bigram", "02_mlp", "03_activations_batchnorm", "04_manual_backprop",
            "05_gpt", "06_attribution", "07_reparameterization"]


@pytest.mark.parametrize("path", LECTURE_PATHS, ids=[p.stem for p in LECTURE_PATHS])
def test_committed_lecture_is_one_clean_full_run(path):
    assert path.stat().st_size < 2_000_000
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in cells if "".join(c["source"]).strip()]
    assert counts == list(range(1, len(counts) + 1)), "save from one clean run: make notebooks"
    assert not any(o["output_type"] == "error" for c in cells for o in c["outputs"])
    first = "".join("".join(o.get("text", "")) for o in cells[0]["outputs"])  # text: a list of lines
    assert "mode: full" in first


def test_lectures_are_named_in_course_order():
    names = [p.stem for p in LECTURE_PATHS]
    assert names == sorted(names) and set(EXPECTED) - {"00_micrograd"} <= set(names) <= set(EXPECTED)


def test_lectures_run_from_the_solutions_folder():
    assert SOLUTIONS == LECTURES / "solutions" and all(p.parent == SOLUTIONS for p in LECTURE_PATHS)


def test_lecture_prefixes_select_and_an_unknown_one_is_a_user_error():
    assert [p.stem for p in lecture_paths(["02", "05"])] == ["02_mlp", "05_gpt"]
    with pytest.raises(UserError, match="no lecture matches 9"):
        lecture_paths(["01", "9"])


def test_make_notebooks_with_an_unknown_lecture_is_a_one_line_error(capsys):
    assert main(["refresh", "99"]) == 2
    assert capsys.readouterr().err.startswith("error: no lecture matches 99 (the lectures: ")


def test_smoke_switch_picks_the_small_value(monkeypatch):
    monkeypatch.setenv("NANOGPT_SMOKE", "1")
    assert pick(5000, 5) == 5 and banner().startswith("mode: smoke | torch ")
    monkeypatch.setenv("NANOGPT_SMOKE", "0")
    assert pick(5000, 5) == 5000 and banner().startswith("mode: full")
