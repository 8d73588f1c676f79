"""Every lecture executes top to bottom in smoke mode, and the committed copies are clean full runs."""

import json

import pytest

from nanogpt.notebooks import banner, execute, lecture_paths, pick

LECTURES = lecture_paths()
EXPECTED = ["01_bigram", "02_mlp", "03_activations_batchnorm", "04_manual_backprop", "05_gpt",
            "06_attribution"]


@pytest.mark.parametrize("path", LECTURES, ids=[p.stem for p in LECTURES])
def test_lecture_runs_in_smoke_mode(path):
    nb = execute(path, smoke=True)
    first = next(c for c in nb.cells if c.cell_type == "code")
    printed = "".join(o.get("text", "") for o in first.outputs)
    assert "mode: smoke" in printed


@pytest.mark.parametrize("path", LECTURES, ids=[p.stem for p in LECTURES])
def test_committed_lecture_is_one_clean_full_run(path):
    assert path.stat().st_size < 2_000_000
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in cells if "".join(c["source"]).strip()]
    assert counts == list(range(1, len(counts) + 1)), "save from one clean run: make notebooks"
    assert not any(o["output_type"] == "error" for c in cells for o in c["outputs"])
    first = "".join("".join(o.get("text", "")) for o in cells[0]["outputs"])  # text: a list of lines
    assert "mode: full" in first


def test_lectures_are_named_in_course_order():
    names = [p.stem for p in LECTURES]
    assert names == sorted(names) and set(names) <= set(EXPECTED)


def test_smoke_switch_picks_the_small_value(monkeypatch):
    monkeypatch.setenv("NANOGPT_SMOKE", "1")
    assert pick(5000, 5) == 5 and banner().startswith("mode: smoke | torch ")
    monkeypatch.setenv("NANOGPT_SMOKE", "0")
    assert pick(5000, 5) == 5000 and banner().startswith("mode: full")
