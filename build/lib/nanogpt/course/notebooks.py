"""Run the lecture notebooks: in full mode to save their outputs, in smoke mode to test them.

The lectures as written, with their reference answers and their saved outputs, are the solution
notebooks in lectures/solutions/; the learner's copies in lectures/ are generated from them
(`python -m nanogpt.course.exercises build`). The lectures read one switch, the environment variable
NANOGPT_SMOKE: with it set to 1 every loop shrinks (a few iterations instead of thousands), so that
the test suite can execute all of them in minutes. `make notebooks` (`python -m
nanogpt.course.exercises refresh`) runs the solution notebooks in full mode with `execute`, saves
their outputs into the files, then regenerates the learner's copies.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from nanogpt.errors import UserError


def find_lectures() -> Path:
    """The clone's lectures/ folder: beside the package's folder (a clone, an editable install),
    else in the current folder or one above it (the package installed with `pip install .`)."""
    places = [Path(__file__).resolve().parents[2], Path.cwd(), *Path.cwd().parents]
    for place in places:
        if (place / "lectures" / "solutions").is_dir():
            return place / "lectures"
    return places[0] / "lectures"  # not there: lecture_paths says where it looked


LECTURES = find_lectures()  # the learner's copies (generated)
SOLUTIONS = LECTURES / "solutions"  # the lectures as written: reference answers and full-run outputs
SMOKE_ENV = "NANOGPT_SMOKE"


def smoke_mode() -> bool:
    """True when the lectures should run their tiny versions (tests and CI)."""
    return os.environ.get(SMOKE_ENV) == "1"


def pick(full, smoke):
    """The full-mode value, or the smoke-mode one under NANOGPT_SMOKE=1 (for iteration counts)."""
    return smoke if smoke_mode() else full


# The lectures' font sizes, in points at the figure's saved size. None is under MIN_FONT_PT, and all
# are at least 10, so that text stays 8 pt or more even in a figure drawn at the lectures' 80 dpi and
# shown pixel for pixel (96 to the inch). Relative sizes ('small' = 0.833 x font.size) follow the base.
MIN_FONT_PT = 8
FONT_SIZES = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 10,
              "ytick.labelsize": 10, "legend.fontsize": 10, "legend.title_fontsize": 10,
              "figure.titlesize": 11, "figure.labelsize": 10}


def plot_style() -> None:
    """Set matplotlib's font sizes to the lectures' (FONT_SIZES); nothing if matplotlib is absent."""
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.rcParams.update(FONT_SIZES)


def banner() -> str:
    """The first line every lecture prints: the mode, the torch version and the device. It also sets
    the lectures' plot style (plot_style), so that every lecture's figures share it."""
    import torch

    from nanogpt.device import pick_device  # imported here: the test helpers need no torch

    plot_style()
    device = pick_device("auto")
    mode = "smoke" if smoke_mode() else "full"
    return f"mode: {mode} | torch {torch.__version__} | device: {device}"


def lecture_paths(names=None, folder: Path = SOLUTIONS) -> list[Path]:
    """The lecture notebooks of `folder` in order, or those whose file name starts with one of
    `names`; a name that matches none is a UserError."""
    if not folder.is_dir():
        raise UserError(f"no lectures in {folder}: the course's commands run in its clone "
                        "(git clone the course, then run them there)")
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return paths
    unknown = [n for n in names if not any(p.name.startswith(n) for p in paths)]
    if unknown:
        known = ", ".join(p.stem for p in paths) or "none"
        raise UserError(f"no lecture matches {' '.join(unknown)} (the lectures: {known})")
    return [p for p in paths if any(p.name.startswith(n) for n in names)]


def client(nb, path: Path, timeout: int = 2400, allow_errors: bool = False):
    """A Jupyter client for `nb` whose kernel starts in the notebook's folder."""
    from nbclient import NotebookClient

    return NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                          resources={"metadata": {"path": str(path.parent)}},
                          extra_arguments=["--log-level=ERROR"])  # not the kernel's start-up chatter


@contextmanager
def smoke_env(smoke: bool):
    """Set NANOGPT_SMOKE for the kernels started inside the block (they inherit this environment)."""
    before = os.environ.get(SMOKE_ENV)
    os.environ[SMOKE_ENV] = "1" if smoke else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SMOKE_ENV, None)
        else:
            os.environ[SMOKE_ENV] = before


def execute(path: Path, smoke: bool, save_to: Path | None = None, timeout: int = 2400,
            allow_errors: bool = False):
    """Execute a notebook top to bottom with Jupyter's own machinery; return the executed notebook.

    With allow_errors a failing cell does not stop the run: its error is among its outputs."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    with smoke_env(smoke):
        client(nb, path, timeout, allow_errors).execute()
    if save_to is not None:
        nbformat.write(nb, save_to)
    return nb
