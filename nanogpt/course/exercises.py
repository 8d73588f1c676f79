"""The lectures' exercises: written once with their answers, handed to the learner as stubs.

A solution notebook (lectures/solutions/NN_name.ipynb) writes an exercise as two code cells. The
answer cell holds the reference answer between marker lines, indented like the code they enclose:

    def count_params(V, T, E, H):
        ### BEGIN SOLUTION
        return V * E + (T * E) * H + H + H * V + V
        ### END SOLUTION

and the cell right after it is the check, whose first line names the exercise:

    # check: counting parameters
    assert count_params(27, 3, 10, 200) == ...

`build` writes the learner's copy lectures/NN_name.ipynb: every block becomes a `# YOUR CODE HERE`
line and `raise NotImplementedError(...)` at the block's indentation (or, for a block opened with
`### BEGIN SOLUTION: best_k = None`, that stub line), outputs and execution counts are dropped, and
all else is kept as it is. `check` runs a learner's notebook and says, per exercise, `ok`,
`not yet: <the error>` or `stub: not done yet`.

    python -m nanogpt.course.exercises build            # make exercises
    python -m nanogpt.course.exercises check 01 --smoke # make check LECTURE=01 ARGS=--smoke
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nanogpt import cli
from nanogpt.course.notebooks import LECTURES, SOLUTIONS, client, execute, lecture_paths, smoke_env
from nanogpt.errors import UserError

BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION(?:[ \t]*|:(?P<stub>.*))$")
END = re.compile(r"^(?P<indent>[ \t]*)### END SOLUTION[ \t]*$")
CHECK = re.compile(r"^# check:(?P<name>.*)$")
HINT = "replace this line with your answer, then run the check cell below"
STUB_MARK = "# YOUR CODE HERE"
META = "nanogpt"  # the notebook-metadata key of a generated copy
MIN_WRONG, MIN_RIGHT = 2, 1  # known-wrong and alternative right answers each exercise must carry


@dataclass(frozen=True)
class Exercise:
    """One exercise of a notebook: its name and the indices of its answer and check cells."""

    name: str
    answer: int
    check: int


def stub_source(source: str) -> str:
    """The answer cell's source with every solution block replaced by its stub."""
    out, block = [], None  # block: (line number, indentation) of the BEGIN still open
    for n, line in enumerate(source.split("\n"), 1):
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            if block:
                raise UserError(f"line {n}: ### BEGIN SOLUTION inside the block opened on line {block[0]}")
            stub = begin["stub"]
            if stub is not None and not stub.strip():
                raise UserError(f"line {n}: nothing after '### BEGIN SOLUTION:' (write a stub line, "
                                "or drop the colon for a raise NotImplementedError)")
            indent = begin["indent"]
            stub = stub.strip() if stub is not None else f'raise NotImplementedError("{HINT}")'
            out += [indent + STUB_MARK, indent + stub]
            block = (n, indent)
        elif end:
            if not block:
                raise UserError(f"line {n}: ### END SOLUTION without a ### BEGIN SOLUTION before it")
            if end["indent"] != block[1]:
                raise UserError(f"line {n}: ### END SOLUTION indented unlike its BEGIN on line {block[0]}")
            block = None
        elif "BEGIN SOLUTION" in line or "END SOLUTION" in line:
            raise UserError(f"line {n}: a malformed marker {line.strip()!r} (write '### BEGIN SOLUTION', "
                            "'### BEGIN SOLUTION: <stub line>' or '### END SOLUTION' alone on its line)")
        elif block is None:
            out.append(line)
    if block:
        raise UserError(f"line {block[0]}: ### BEGIN SOLUTION without a ### END SOLUTION after it")
    return "\n".join(out)


def with_answer(source: str, answer) -> str:
    """The answer cell's source with its solution block(s) replaced by `answer` (a string, or one
    string per block), each line indented like the block: how a known-wrong or an alternative
    right answer (variants_path) is put in the solution's place."""
    answers = [answer] if isinstance(answer, str) else list(answer)
    out, inside = [], False
    for line in source.split("\n"):
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            if not answers:
                raise UserError("fewer answers than solution blocks")
            out += [begin["indent"] + text if text else "" for text in answers.pop(0).split("\n")]
            inside = True
        elif end:
            inside = False
        elif not inside:
            out.append(line)
    if answers:
        raise UserError("more answers than solution blocks")
    return "\n".join(out)


def variants_path(solution: Path) -> Path:
    """Where a solution notebook's known-wrong and alternative right answers are kept: a JSON file
    beside it, lectures/solutions/variants/NN_name.json, never copied to the learner.

        {"<exercise name>": {"wrong": [{"why": "...", "answer": "..."}, ...],
                             "right": [{"why": "...", "answer": "..."}, ...]}}
    """
    return solution.parent / "variants" / f"{solution.stem}.json"


def load_variants(solution: Path) -> dict:
    """The variants of a solution notebook's exercises ({} when it has none yet)."""
    path = variants_path(solution)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def has_solution(source: str) -> bool:
    """Whether a cell's source holds a solution block."""
    return any(BEGIN.match(line) for line in source.split("\n"))


def check_name(cell) -> str | None:
    """The exercise name of a check cell (its first line is `# check: <name>`), or None."""
    if cell.cell_type != "code":
        return None
    match = CHECK.match(cell.source.split("\n", 1)[0])
    return match["name"].strip() if match else None


def find(nb, where: str = "the notebook") -> list[Exercise]:
    """The exercises of a notebook, in order: each check cell and the answer cell just before it."""
    found = []
    for i, cell in enumerate(nb.cells):
        name = check_name(cell)
        if name is None:
            continue
        if not name:
            raise UserError(f"{where}, cell {i}: a '# check:' line without the exercise's name")
        if i == 0 or nb.cells[i - 1].cell_type != "code":
            raise UserError(f"{where}, cell {i}: the check {name!r} does not follow a code cell")
        if name in {e.name for e in found}:
            raise UserError(f"{where}, cell {i}: a second exercise named {name!r}")
        found.append(Exercise(name, i - 1, i))
    return found


def validate(nb, where: str) -> list[Exercise]:
    """The exercises of a solution notebook, after checking that answers and checks pair up."""
    found = find(nb, where)
    answers = {e.answer for e in found}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        try:
            stub_source(cell.source)
        except UserError as e:
            raise UserError(f"{where}, cell {i}, {e}") from None
        if has_solution(cell.source) and i not in answers:
            raise UserError(f"{where}, cell {i}: a solution block without a '# check: <name>' cell after it")
    for e in found:
        if not has_solution(nb.cells[e.answer].source):
            raise UserError(f"{where}, cell {e.answer}: the answer cell of {e.name!r} has no solution block")
    return found


def read_notebook(path: Path):
    """A notebook file, or a one-line UserError for one that is not a readable notebook (cut off
    mid-write, not JSON, not nbformat 4)."""
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror or e})") from None
    except Exception as e:  # NotJSONError, JSONDecodeError, a schema's ValidationError, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise UserError(f"{path} is not a readable notebook ({first}): restore it from git, or "
                        "regenerate it with make exercises") from None


def sources_digest(nb) -> str:
    """A fingerprint of a notebook's cell sources (not its outputs): it changes when anyone edits it."""
    cells = [[c.cell_type, c.source] for c in nb.cells]
    return hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode()).hexdigest()


def learner_notebook(nb, where: str = "the notebook"):
    """The learner's copy of a solution notebook: stubs for answers, no outputs, prose unchanged."""
    validate(nb, where)
    out = copy.deepcopy(nb)
    for cell in out.cells:
        cell.metadata.pop("execution", None)  # nbclient's timings: part of the outputs
        if cell.cell_type == "code":
            cell.source = stub_source(cell.source)
            cell.outputs = []
            cell.execution_count = None
    # the kernel's name as Jupyter Lab writes it on its first save: opening a copy changes nothing
    out.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python",
                                  "name": "python3"}
    out.metadata[META] = {"generated_by": "python -m nanogpt.course.exercises build (make exercises)",
                          "sources_sha256": sources_digest(out)}
    return out


def learner_text(solution: Path) -> str:
    """The learner's copy of a solution notebook, as the exact text `build` writes."""
    import nbformat

    nb = read_notebook(solution)
    return nbformat.writes(learner_notebook(nb, str(solution))) + "\n"  # as nbformat.write ends it


def edited(learner: Path) -> bool:
    """Whether a learner's copy holds edits: sources that differ from the ones it was generated with."""
    if not learner.exists():
        return False
    nb = read_notebook(learner)
    return nb.metadata.get(META, {}).get("sources_sha256") != sources_digest(nb)


def refuse_to_overwrite(solutions: list[Path], out_dir: Path = LECTURES) -> None:
    """A UserError if regenerating would overwrite the learner's edits in any of these lectures."""
    mine = [out_dir / s.name for s in solutions if edited(out_dir / s.name)]
    if mine:
        names = ", ".join(shown(p) for p in mine)
        raise UserError(f"your edits in {names} would be overwritten: copy the file away (or "
                        "`git checkout` it), or pass --force (make exercises ARGS=--force)")


def build(solutions: list[Path], out_dir: Path = LECTURES, force: bool = False) -> list[str]:
    """Write the learner's copy of each solution notebook into out_dir; one line of news per file."""
    if not force:
        refuse_to_overwrite(solutions, out_dir)
    news = []
    for solution in solutions:
        target = out_dir / solution.name
        text = learner_text(solution)
        if target.exists() and target.read_bytes() == text.encode():
            news.append(f"{shown(target)}: up to date")
            continue
        target.write_bytes(text.encode())  # bytes: the same file on every platform
        news.append(f"{shown(target)}: written from {shown(solution)}")
    return news


def error_of(cell) -> dict | None:
    """The error output of an executed cell, or None if it ran clean."""
    return next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(err: dict, width: int = 160) -> str:
    """An error output as one line: `Type: message`, or the failing line where there is no message."""
    message = (err.get("evalue") or "").strip().split("\n")[0]
    if not message:  # a bare assert: show the line that failed
        arrows = [ANSI.sub("", line) for frame in err.get("traceback", []) for line in frame.split("\n")
                  if "---->" in ANSI.sub("", line)]
        if arrows:
            message = "at " + arrows[-1].split("---->", 1)[1].strip().lstrip("0123456789").strip()
    line = f"{err.get('ename', 'Error')}: {message}" if message else err.get("ename", "Error")
    return line if len(line) <= width else line[: width - 3] + "..."


def verdict(nb, ex: Exercise, stub: str | None = None) -> str:
    """`ok`, `stub: not done yet` or `not yet: <error>` for one exercise of an executed notebook;
    `stub` is the generated stub of its answer cell, to recognise an answer not yet touched."""
    answer, check = nb.cells[ex.answer], nb.cells[ex.check]
    check_err, answer_err = error_of(check), error_of(answer)
    if check_err is None and check.get("execution_count") is None:
        return "not yet: not run (the notebook stopped before it)"
    if check_err is None:
        return "ok"
    not_implemented = "NotImplementedError" in {check_err.get("ename"), (answer_err or {}).get("ename")}
    if not_implemented or (stub is not None and answer.source.strip() == stub.strip()):
        return "stub: not done yet"
    if answer_err is not None:
        return f"not yet: the answer cell failed: {one_line(answer_err)}"
    return f"not yet: {one_line(check_err)}"


def run_notebook(path: Path, smoke: bool, timeout: int = 2400):
    """Execute a notebook past its errors; return it with what stopped it early, if anything."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = read_notebook(path)
    for cell in nb.cells:  # a check the run never reached must not look like one that passed
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    stopped = None
    runner = client(nb, path, timeout, allow_errors=True)
    with smoke_env(smoke):
        try:
            runner.execute()
        except Exception as e:
            # Ctrl-C: Jupyter's client catches it, tears the kernel down and then fails in its own
            # clean-up (DeadKernelError, AssertionError); its signal handler leaves this mark
            if getattr(runner, "_async_cleanup_kernel_future", None) is not None:
                raise KeyboardInterrupt from None
            if not isinstance(e, (CellTimeoutError, DeadKernelError)):
                raise
            stopped = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    return nb, stopped


def printed(cell, max_lines: int = 12, width: int = 160) -> list[str]:
    """What a cell printed (its stdout), cut to max_lines lines of at most `width` characters."""
    text = "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")
    lines = [line if len(line) <= width else line[: width - 3] + "..." for line in text.rstrip().splitlines()]
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [f"... ({len(lines) - max_lines + 1} more lines)"]
    return lines


def check_lecture(path: Path, smoke: bool, solution: Path | None = None,
                  timeout: int = 2400) -> tuple[list[str], list[str]]:
    """Run one lecture and judge its exercises: the report's lines, and each exercise's verdict.

    `solution`, when given, is the solution notebook the copy was generated from: an answer cell
    still equal to its stub is then reported as a stub even where its check fails some other way."""
    stubs = {}
    if solution is not None and solution.exists():
        sol = read_notebook(solution)
        stubs = {e.name: stub_source(sol.cells[e.answer].source) for e in validate(sol, str(solution))}
    t0 = time.time()
    nb, stopped = run_notebook(path, smoke, timeout)
    exercises = find(nb, str(path))
    lines = [f"{path.stem} ({'smoke' if smoke else 'full'} mode, {time.time() - t0:.0f} s)"]
    width = max((len(e.name) for e in exercises), default=0)
    verdicts = [verdict(nb, e, stubs.get(e.name)) for e in exercises]
    for number, (e, v) in enumerate(zip(exercises, verdicts, strict=True), 1):
        lines.append(f"  {number}. {e.name:{width}s}  {v}")
        if v.startswith("not yet"):  # what the check printed: a table of which parts are right
            lines += [f"       | {line}" for line in printed(nb.cells[e.check])]
    if not exercises:
        lines.append("  (no exercises)")
    checked = {i for e in exercises for i in (e.answer, e.check)}
    for i, cell in enumerate(nb.cells):
        err = error_of(cell) if cell.cell_type == "code" and i not in checked else None
        if err is not None:
            lines.append(f"  note: cell {i} (not an exercise) failed: {one_line(err)}")
    if stopped:
        lines.append(f"  note: the run stopped early: {stopped}")
    return lines, verdicts


def shown(path: Path) -> str:
    """A path as the user reads it: relative to the repository when inside it."""
    root = LECTURES.parent
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def do_build(args) -> int:
    """The `build` command."""
    for line in build(lecture_paths(args.names), force=args.force):
        print(line)
    return 0


def do_refresh(args) -> int:
    """The `refresh` command (make notebooks): run the chosen solution notebooks, in full mode save
    their outputs and rebuild their learner copies."""
    paths = lecture_paths(args.names)
    if not args.smoke and not args.force:
        refuse_to_overwrite(paths)  # before minutes of running, not after
    for path in paths:
        t0 = time.time()
        print(f"running {shown(path)} ({'smoke' if args.smoke else 'full'}) ...", flush=True)
        execute(path, smoke=args.smoke, save_to=None if args.smoke else path)
        print(f"  done in {time.time() - t0:.0f} s", flush=True)
    if not args.smoke:
        for line in build(paths, force=args.force):
            print(line)
    return 0


def do_check(args) -> int:
    """The `check` command: 0 when every exercise of the chosen lectures passes, 1 otherwise."""
    folder = SOLUTIONS if args.solutions else LECTURES
    files = [Path(n) for n in args.names if n.endswith(".ipynb")]  # a copy of a lecture, anywhere
    for f in files:
        if not f.is_file():
            raise UserError(f"{f}: no such notebook")
    prefixes = [n for n in args.names if not n.endswith(".ipynb")]
    paths = files + (lecture_paths(prefixes, folder) if prefixes or not files else [])
    if not paths:
        raise UserError(f"no lecture notebooks in {shown(folder)}: make exercises writes them")
    verdicts = []
    for path in paths:
        print(f"running {shown(path)} ({'smoke' if args.smoke else 'full'} mode) ...", flush=True)
        beside = path.parent / "solutions" / path.name  # a copy's own solutions, else the course's
        solution = None if args.solutions else beside if beside.is_file() else SOLUTIONS / path.name
        lines, found = check_lecture(path, args.smoke, solution, args.timeout)
        print("\n".join(lines), flush=True)
        verdicts += found
    print(summary(verdicts))
    return 0 if all(v == "ok" for v in verdicts) else 1


def summary(verdicts: list[str]) -> str:
    """The last line of `check`: how many exercises pass, and how many are left."""
    ok = sum(v == "ok" for v in verdicts)
    stubs = sum(v.startswith("stub") for v in verdicts)
    line = f"{ok} of {len(verdicts)} exercises pass"
    if ok < len(verdicts):
        line += f"; {len(verdicts) - ok - stubs} not yet, {stubs} not started"
    return line


parser = cli.parser("python -m nanogpt.course.exercises",
                    "The lectures' exercises: generate the learner's copies, check the answers.")
commands = parser.add_subparsers(dest="command", required=True, metavar="{build,check,refresh}")


def command(name: str, work, help: str, description: str):
    """A subcommand's parser (a cli.Parser too: a bad flag is one line) that runs `work`."""
    p = commands.add_parser(name, formatter_class=cli.HelpFormatter, help=help, description=description)
    p.set_defaults(work=work)
    return p


p_build = command("build", do_build, "write lectures/NN_*.ipynb from lectures/solutions/ (make exercises)",
                  "Write the learner's notebooks lectures/NN_*.ipynb from the solution notebooks in\n"
                  "lectures/solutions/: answers become stubs, outputs are dropped. A copy that holds\n"
                  "the learner's edits is not overwritten, unless --force.")
p_build.add_argument("names", nargs="*", default=[], help="lecture prefixes, e.g. 01 05; none given: all")
p_build.add_argument("--force", action="store_true", help="overwrite copies that hold edits too")
p_check = command("check", do_check, "run lectures and say which exercises pass (make check LECTURE=01)",
                  "Execute the learner's notebooks in lectures/ as saved (with your answers), past\n"
                  "any error, and print per exercise: ok, not yet: <the error>, or stub: not done yet.\n"
                  "The last line counts them. Exit status 0 when every exercise passes, 1 otherwise\n"
                  "(make check says the same in its last line and exits 0).")
p_check.add_argument("names", nargs="*", default=[],
                     help="lecture prefixes, e.g. 01 05, or notebook files; none given: all of lectures/")
p_check.add_argument("--solutions", action="store_true", help="check lectures/solutions/ instead")
p_check.add_argument("--smoke", action="store_true", help="smoke mode (NANOGPT_SMOKE=1): tiny loops")
p_check.add_argument("--timeout", type=cli.positive_int, default=2400, help="seconds one cell may run")
p_refresh = command("refresh", do_refresh, "run lectures/solutions/ in full, save outputs, rebuild copies "
                    "(make notebooks)",
                    "Execute the solution notebooks (lectures/solutions/) and save their outputs, then\n"
                    "regenerate the learner's copies in lectures/ from them (make notebooks).")
p_refresh.add_argument("names", nargs="*", default=[], help="lecture prefixes, e.g. 01 05; none given: all")
p_refresh.add_argument("--smoke", action="store_true", help="tiny loops; save nothing, regenerate nothing")
p_refresh.add_argument("--force", action="store_true", help="regenerate learner copies that hold edits too")


def main(argv=None) -> int:
    """The command line: `python -m nanogpt.course.exercises --help`."""
    return cli.invoke(lambda args: args.work(args), parser, argv)


if __name__ == "__main__":
    sys.exit(main())
