"""One command line for every job of the course, on every OS (the Makefile's targets call it):

    python -m nanogpt doctor            # is this machine ready? (make doctor)
    python -m nanogpt train --preset gpt-cpu-fast
    python -m nanogpt sample --ckpt runs/gpt-cpu-fast
    python -m nanogpt <command> --help

Each command is the `main(argv)` of the module that does the job; this file only dispatches.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

# command -> (module whose main(argv) runs it, arguments put first, what it does)
COMMANDS = {
    "doctor": ("nanogpt.course.doctor", [], "check this machine for the course (ok/FAIL per item)"),
    "data": ("nanogpt.datasets", [], "find or download the datasets and verify their sha256"),
    "train": ("nanogpt.train", [], "train a model (make train)"),
    "sample": ("nanogpt.sample", [], "generate text from a checkpoint (make sample)"),
    "attribute": ("nanogpt.attribution.cli", [], "attribute each character to its context (make attribute)"),
    "check": ("nanogpt.course.exercises", ["check"], "run your lectures and say which exercises pass"),
    "exercises": ("nanogpt.course.exercises", ["build"], "regenerate your copies in lectures/"),
    "notebooks": ("nanogpt.course.exercises", ["refresh"], "rerun the solution notebooks in full"),
    "ladder": ("nanogpt.course.ladder", [], "the loss ladder's tables"),
    "backprop": ("nanogpt.backprop", [], "train the MLP on hand-written gradients"),
    "lab": (None, [], "open Jupyter Lab on lectures/"),
    "test": (None, [], "run the test suite (pytest)"),
}


def usage() -> str:
    lines = ["usage: python -m nanogpt <command> [flags]   (python -m nanogpt <command> --help)", "",
             "commands:"]
    return "\n".join(lines + [f"  {name:10s} {what}" for name, (_, _, what) in COMMANDS.items()])


def lab(argv) -> int:
    """Jupyter Lab on the learner's lectures/ (root needs --allow-root: a container, a VM)."""
    from nanogpt.course.notebooks import LECTURES

    if importlib.util.find_spec("jupyterlab") is None:
        print("error: Jupyter Lab is not installed: pip install jupyterlab (make lab installs it)",
              file=sys.stderr)
        return 2
    root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    return subprocess.call([sys.executable, "-m", "jupyterlab", str(LECTURES), *root, *argv])


def test(argv) -> int:
    """pytest over the clone's tests/, with the data from ../shared/data when it is there."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    shared = root.parent / "shared" / "data"
    if "NANOGPT_DATA_DIR" not in env and (shared / "tinyshakespeare.txt").is_file():
        env["NANOGPT_DATA_DIR"] = str(shared)
    return subprocess.call([sys.executable, "-m", "pytest", *argv], cwd=root, env=env)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: no command {name!r} (commands: {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    module, first, _ = COMMANDS[name]
    if module is None:
        return {"lab": lab, "test": test}[name](rest)
    return importlib.import_module(module).main([*first, *rest])


if __name__ == "__main__":
    sys.exit(main())
