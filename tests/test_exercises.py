"""The exercises: solution markers become stubs, the learner's copies are exactly what the generator
makes, every check fails on its stub and passes on its solution, and `check` reports each one."""

import copy

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from nanogpt.course import exercises as ex
from nanogpt.course.notebooks import LECTURES, client, lecture_paths, smoke_env
from nanogpt.errors import UserError

SOLUTIONS = lecture_paths()
RAISE = f'raise NotImplementedError("{ex.HINT}")'


# --- the marker parser ---------------------------------------------------------------------------

def test_block_becomes_a_raise_at_its_indentation_and_the_rest_is_kept():
    source = ("def f(x):\n"
              "    \"\"\"Twice x.\"\"\"\n"
              "    ### BEGIN SOLUTION\n"
              "    y = 2 * x\n"
              "    return y\n"
              "    ### END SOLUTION\n"
              "\n"
              "print(f(3))")
    assert ex.stub_source(source) == ("def f(x):\n"
                                      "    \"\"\"Twice x.\"\"\"\n"
                                      "    # YOUR CODE HERE\n"
                                      f"    {RAISE}\n"
                                      "\n"
                                      "print(f(3))")


def test_begin_line_with_a_stub_gives_that_line_under_your_code_here():
    source = "### BEGIN SOLUTION: dx = None\ndx = 2 * x\n### END SOLUTION\nprint(dx)"
    assert ex.stub_source(source) == "# YOUR CODE HERE\ndx = None\nprint(dx)"
    nested = "for i in range(3):\n\t### BEGIN SOLUTION:   total = 0  \n\ttotal += i\n\t### END SOLUTION"
    assert ex.stub_source(nested) == "for i in range(3):\n\t# YOUR CODE HERE\n\ttotal = 0"


def test_every_block_of_a_cell_is_replaced():
    source = ("### BEGIN SOLUTION\na = 1\n### END SOLUTION\n"
              "x = 0\n"
              "### BEGIN SOLUTION: b = None\nb = 2\n### END SOLUTION\n")
    assert ex.stub_source(source) == f"# YOUR CODE HERE\n{RAISE}\nx = 0\n# YOUR CODE HERE\nb = None\n"


def test_a_cell_without_markers_is_left_alone():
    assert ex.stub_source("x = 1\n# a comment\n") == "x = 1\n# a comment\n"


@pytest.mark.parametrize("source, message", [
    ("x = 1\n### BEGIN SOLUTION\ny = 2", "line 2: ### BEGIN SOLUTION without a ### END SOLUTION"),
    ("y = 2\n### END SOLUTION", "line 2: ### END SOLUTION without a ### BEGIN SOLUTION"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "line 2: ### BEGIN SOLUTION inside"),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n### END SOLUTION", "line 4: ### END SOLUTION indented"),
    ("### BEGIN SOLUTION:\nx = 1\n### END SOLUTION", "line 1: nothing after"),
    ("## BEGIN SOLUTION\nx = 1", "line 1: a malformed marker"),
    ("### BEGIN SOLUTION now\nx = 1\n### END SOLUTION", "line 1: a malformed marker"),
])
def test_unmatched_or_malformed_markers_are_a_clear_error(source, message):
    with pytest.raises(UserError, match=message):
        ex.stub_source(source)


# --- notebooks: pairing, generation, the guard ------------------------------------------------------

def toy_solution():
    """A solution notebook of two exercises, one of each stub kind, with outputs as a run leaves them."""
    nb = new_notebook(cells=[
        new_markdown_cell("# Toy\n\nSome prose."),
        new_code_cell("a = 40", execution_count=1),
        new_code_cell("def plus2(x):\n    ### BEGIN SOLUTION\n    return x + 2\n    ### END SOLUTION",
                      execution_count=2),
        new_code_cell("# check: plus two\nassert plus2(a) == 42, 'plus2(40) should be 42'",
                      execution_count=3),
        new_markdown_cell("More prose."),
        new_code_cell("### BEGIN SOLUTION: answer = None\nanswer = a + 2\n### END SOLUTION",
                      execution_count=4),
        new_code_cell("# check: the answer\nassert answer == 42", execution_count=5),
    ])
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="40\n")]
    nb.cells[1].metadata["execution"] = {"iopub.status.busy": "2024-01-01T00:00:00"}
    return nb


def test_exercises_are_found_as_check_cells_and_the_answer_before_each():
    assert ex.validate(toy_solution(), "toy") == [ex.Exercise("plus two", 2, 3),
                                                  ex.Exercise("the answer", 5, 6)]


def test_a_solution_without_its_check_or_a_check_without_a_solution_is_an_error():
    nb = toy_solution()
    nb.cells[3].source = "assert plus2(a) == 42"  # no '# check:' line any more
    with pytest.raises(UserError, match="toy, cell 2: a solution block without a '# check: <name>' cell"):
        ex.validate(nb, "toy")
    nb = toy_solution()
    nb.cells[5].source = "answer = a + 2"
    with pytest.raises(UserError, match="toy, cell 5: the answer cell of 'the answer' has no solution block"):
        ex.validate(nb, "toy")
    nb = toy_solution()
    nb.cells[6].source = "# check: plus two\nassert answer == 42"
    with pytest.raises(UserError, match="a second exercise named 'plus two'"):
        ex.validate(nb, "toy")
    nb = toy_solution()
    nb.cells[2].source += "\n### END SOLUTION"
    with pytest.raises(UserError, match="toy, cell 2, line 5: ### END SOLUTION without"):
        ex.validate(nb, "toy")


def test_learner_copy_has_stubs_no_outputs_and_the_same_prose():
    solution = toy_solution()
    learner = ex.learner_notebook(solution)
    prose = [c.source for c in learner.cells if c.cell_type == "markdown"]
    assert prose == ["# Toy\n\nSome prose.", "More prose."]
    assert learner.cells[2].source == f"def plus2(x):\n    # YOUR CODE HERE\n    {RAISE}"
    assert learner.cells[5].source == "# YOUR CODE HERE\nanswer = None"
    assert [c.source for c in learner.cells[::3]] == [c.source for c in solution.cells[::3]]  # the others
    code = [c for c in learner.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None and "execution" not in c.metadata for c in code)
    assert [c.id for c in learner.cells] == [c.id for c in solution.cells]
    assert solution.cells[1].outputs and solution.cells[2].source.count("SOLUTION") == 2  # input unchanged


def test_generator_writes_the_same_bytes_every_time(tmp_path):
    (tmp_path / "solutions").mkdir()
    solution = tmp_path / "solutions" / "01_toy.ipynb"
    nbformat.write(toy_solution(), solution)
    assert ex.build([solution], tmp_path) == [f"{tmp_path / '01_toy.ipynb'}: written from {solution}"]
    first = (tmp_path / "01_toy.ipynb").read_bytes()
    assert ex.build([solution], tmp_path) == [f"{tmp_path / '01_toy.ipynb'}: up to date"]
    assert (tmp_path / "01_toy.ipynb").read_bytes() == first == ex.learner_text(solution).encode()


def test_build_refuses_to_overwrite_the_learners_edits_unless_forced(tmp_path):
    (tmp_path / "solutions").mkdir()
    solution = tmp_path / "solutions" / "01_toy.ipynb"
    nbformat.write(toy_solution(), solution)
    ex.build([solution], tmp_path)
    learner = tmp_path / "01_toy.ipynb"
    nb = nbformat.read(learner, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="40\n")]  # only ran it
    nbformat.write(nb, learner)
    assert not ex.edited(learner)
    ex.build([solution], tmp_path)  # outputs alone are no work to keep
    nb.cells[2].source = "def plus2(x):\n    return x + 2"
    nbformat.write(nb, learner)
    assert ex.edited(learner)
    with pytest.raises(UserError, match=r"your edits in .*01_toy.ipynb would be overwritten.*--force"):
        ex.build([solution], tmp_path)
    assert "return x + 2" in learner.read_text()
    ex.build([solution], tmp_path, force=True)
    assert learner.read_text() == ex.learner_text(solution)


# --- the committed notebooks -------------------------------------------------------------------------

@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_committed_learner_copy_is_what_the_generator_makes(solution):
    """What matters, the cells' types and sources, not metadata bytes: Jupyter Lab rewrites some
    metadata when it saves a notebook, and opening a lecture must not fail the suite."""
    learner = LECTURES / solution.name
    assert learner.exists(), f"{learner.name} missing: make exercises"
    made = nbformat.reads(ex.learner_text(solution), as_version=4)
    mine = nbformat.read(learner, as_version=4)
    assert [(c.cell_type, c.source) for c in mine.cells] == [(c.cell_type, c.source) for c in made.cells], \
        f"{learner.name} is stale: make exercises"
    assert not ex.edited(learner)


def test_a_copy_saved_by_jupyter_lab_is_still_the_generators(tmp_path):
    """Lab's first save of a copy: the kernel's display name, language_info, cell metadata; and no
    change at all to what the generator wrote for the kernelspec."""
    (tmp_path / "solutions").mkdir()
    solution = tmp_path / "solutions" / "01_toy.ipynb"
    nbformat.write(toy_solution(), solution)
    ex.build([solution], tmp_path)
    learner = tmp_path / "01_toy.ipynb"
    nb = nbformat.read(learner, as_version=4)
    assert nb.metadata.kernelspec.display_name == "Python 3 (ipykernel)"  # what Lab writes
    nb.metadata.language_info = {"name": "python", "version": "3.12.1"}
    for cell in nb.cells:
        cell.metadata["trusted"] = True
    nbformat.write(nb, learner)
    assert not ex.edited(learner)
    assert ex.build([solution], tmp_path) == [f"{learner}: written from {solution}"]  # no refusal


def test_every_learner_copy_has_its_solution():
    assert [p.name for p in lecture_paths(folder=LECTURES)] == [p.name for p in SOLUTIONS]


def test_the_lectures_have_their_exercises():
    counts = {p.stem: len(ex.validate(nbformat.read(p, as_version=4), str(p))) for p in SOLUTIONS}
    assert counts == {"00_micrograd": 6, "01_bigram": 5, "02_mlp": 4, "03_activations_batchnorm": 5,
                      "04_manual_backprop": 7, "05_gpt": 6, "06_attribution": 4, "07_reparameterization": 4}


def check_passes(runner, nb, exercise, answer_source) -> bool:
    """Run an answer in the kernel's current state, then the exercise's check: True when it passes."""
    answer = new_code_cell(answer_source)
    runner.execute_cell(answer, exercise.answer)
    check = copy.deepcopy(nb.cells[exercise.check])
    runner.execute_cell(check, exercise.check)
    return ex.error_of(answer) is None and ex.error_of(check) is None


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_each_check_rejects_its_stub_and_wrong_answers_and_accepts_right_ones(solution):
    """The lecture's one smoke run in the suite: every cell runs clean, and at each exercise, in the
    kernel that has run everything before it, the stub and every known-wrong answer must fail the
    check and every alternative right answer must pass it; then the solution runs and passes."""
    nb = nbformat.read(solution, as_version=4)
    at = {e.answer: e for e in ex.validate(nb, str(solution))}
    variants = ex.load_variants(solution)
    failures, proved = [], []
    runner = client(nb, solution, timeout=900, allow_errors=True)
    with smoke_env(True), runner.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if i in at:
                e = at[i]
                if check_passes(runner, nb, e, ex.stub_source(cell.source)):
                    failures.append(f"{e.name}: the check passes on the stub")
                for v in variants.get(e.name, {}).get("wrong", []):
                    if check_passes(runner, nb, e, ex.with_answer(cell.source, v["answer"])):
                        failures.append(f"{e.name}: the check accepts a wrong answer ({v['why']})")
                for v in variants.get(e.name, {}).get("right", []):
                    if not check_passes(runner, nb, e, ex.with_answer(cell.source, v["answer"])):
                        failures.append(f"{e.name}: the check rejects a right answer ({v['why']})")
                proved.append(e.name)
            runner.execute_cell(cell, i)
            if (err := ex.error_of(cell)) is not None:
                failures.append(f"cell {i}: {ex.one_line(err)}")
    assert not failures, "\n".join(failures)
    assert len(proved) == len(at)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "mode: smoke" in "".join(o.get("text", "") for o in first.outputs)


# --- python -m nanogpt.course.exercises check ---------------------------------------------------------

def test_check_says_ok_not_yet_or_stub_per_exercise(tmp_path):
    (tmp_path / "solutions").mkdir()
    solution = tmp_path / "solutions" / "01_toy.ipynb"
    nb = toy_solution()
    for name, var, value in [("bee", "b", 2), ("sea", "c", 3), ("dee", "d", 4)]:
        nb.cells += [new_code_cell(f"### BEGIN SOLUTION\n{var} = {value}\n### END SOLUTION"),
                     new_code_cell(f"# check: {name}\nprint('{var} is', {var})\nassert {var} == {value}")]
    nb.cells.append(new_code_cell("undefined_name"))
    nbformat.write(nb, solution)
    ex.build([solution], tmp_path)
    learner = tmp_path / "01_toy.ipynb"
    mine = nbformat.read(learner, as_version=4)
    mine.cells[2].source = "def plus2(x):\n    return x + 2"  # done; 'the answer' keeps its placeholder
    mine.cells[7].source = "b = 3"  # wrong, with an assert that has no message
    mine.cells[9].source = "c = 1 / 0"  # the answer itself fails
    nbformat.write(mine, learner)
    lines, verdicts = ex.check_lecture(learner, smoke=True, solution=solution)
    assert lines[0].startswith("01_toy (smoke mode, ")
    assert lines[1:] == [
        "  1. plus two    ok",
        "  2. the answer  stub: not done yet",
        "  3. bee         not yet: AssertionError: at assert b == 2",
        "       | b is 3",  # what the check printed, under its line
        "  4. sea         not yet: the answer cell failed: ZeroDivisionError: division by zero",
        "  5. dee         stub: not done yet",
        "  note: cell 13 (not an exercise) failed: NameError: name 'undefined_name' is not defined",
    ]
    assert ex.summary(verdicts) == "1 of 5 exercises pass; 2 not yet, 2 not started"
    lines, verdicts = ex.check_lecture(solution, smoke=True)
    assert verdicts == ["ok"] * 5 and ex.summary(verdicts) == "5 of 5 exercises pass"


def test_check_ends_with_the_summary_and_status_1_until_all_pass(tmp_path, capsys):
    (tmp_path / "solutions").mkdir()
    solution = tmp_path / "solutions" / "01_toy.ipynb"
    nbformat.write(toy_solution(), solution)
    ex.build([solution], tmp_path)
    assert ex.main(["check", str(tmp_path / "01_toy.ipynb"), "--smoke"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "0 of 2 exercises pass; 0 not yet, 2 not started"
    assert ex.main(["check", str(solution), "--smoke"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 of 2 exercises pass"


def test_a_notebook_cut_off_mid_json_is_one_line(tmp_path, capsys):
    cut = tmp_path / "01_bigram.ipynb"
    cut.write_text('{"cells": [{"cell_type": "code", "sou')
    assert ex.main(["check", str(cut), "--smoke"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {cut} is not a readable notebook") and err.count("\n") == 1
    with pytest.raises(UserError, match="not a readable notebook"):
        ex.edited(cut)


def test_check_of_an_unknown_lecture_is_a_one_line_error(capsys):
    assert ex.main(["check", "99"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no lecture matches 99") and err.count("\n") == 1
    assert ex.main(["check", "nowhere/01_bigram.ipynb"]) == 2
    assert capsys.readouterr().err == "error: nowhere/01_bigram.ipynb: no such notebook\n"
    assert ex.main(["build", "--no-such-flag"]) == 2
    assert capsys.readouterr().err == "error: unrecognized arguments: --no-such-flag\n"


@pytest.mark.parametrize("argv", [["--help"], ["build", "--help"], ["check", "--help"]])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        ex.main(argv)
    assert stop.value.code == 0 and "usage: python -m nanogpt.course.exercises" in capsys.readouterr().out


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_every_exercise_has_known_wrong_and_alternative_right_answers(solution):
    names = {e.name for e in ex.validate(nbformat.read(solution, as_version=4), str(solution))}
    variants = ex.load_variants(solution)
    assert set(variants) <= names, f"variants for exercises that do not exist: {set(variants) - names}"
    thin = [f"{n}: {len(variants.get(n, {}).get('wrong', []))} wrong, "
            f"{len(variants.get(n, {}).get('right', []))} right" for n in sorted(names)
            if len(variants.get(n, {}).get("wrong", [])) < ex.MIN_WRONG
            or len(variants.get(n, {}).get("right", [])) < ex.MIN_RIGHT]
    assert not thin, "each exercise needs 2 known-wrong answers and 1 right one: " + "; ".join(thin)
