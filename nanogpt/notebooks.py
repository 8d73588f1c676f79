"""Run the lecture notebooks: in full mode to save their outputs, in smoke mode to test them.

The lectures read one switch, the environment variable NANOGPT_SMOKE: with it set to 1 every loop
shrinks (a few iterations instead of thousands), so that the test suite can execute all of them in
minutes. `make notebooks` runs them in full mode and saves the outputs into the files.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

LECTURES = Path(__file__).resolve().parent.parent / "lectures"
SMOKE_ENV = "NANOGPT_SMOKE"


def smoke_mode() -> bool:
    """True when the lectures should run their tiny versions (tests and CI)."""
    return os.environ.get(SMOKE_ENV) == "1"


def pick(full, smoke):
    """The full-mode value, or the smoke-mode one under NANOGPT_SMOKE=1 (for iteration counts)."""
    return smoke if smoke_mode() else full


def banner() -> str:
    """The first line every lecture prints: the mode, the torch version and the device."""
    import torch

    device = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    mode = "smoke" if smoke_mode() else "full"
    return f"mode: {mode} | torch {torch.__version__} | device: {device}"


def lecture_paths(names=None) -> list[Path]:
    """The lecture notebooks in order, or those whose file name starts with one of `names`."""
    paths = sorted(LECTURES.glob("[0-9][0-9]_*.ipynb"))
    if names:
        paths = [p for p in paths if any(p.name.startswith(n) for n in names)]
    return paths


def execute(path: Path, smoke: bool, save_to: Path | None = None, timeout: int = 2400):
    """Execute a notebook top to bottom with Jupyter's own machinery; return the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env_before = os.environ.get(SMOKE_ENV)
    os.environ[SMOKE_ENV] = "1" if smoke else "0"  # the kernel inherits this process's environment
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    finally:
        if env_before is None:
            os.environ.pop(SMOKE_ENV, None)
        else:
            os.environ[SMOKE_ENV] = env_before
    if save_to is not None:
        nbformat.write(nb, save_to)
    return nb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Execute the lecture notebooks and save their outputs (make notebooks).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("names", nargs="*", help="lecture prefixes to run, e.g. 01 05 (default: all)")
    parser.add_argument("--smoke", action="store_true", help="tiny loops; do not save outputs")
    args = parser.parse_args(argv)
    paths = lecture_paths(args.names)
    if not paths:
        print(f"error: no lecture matches {args.names}", file=sys.stderr)
        return 2
    for path in paths:
        t0 = time.time()
        print(f"running {path.name} ({'smoke' if args.smoke else 'full'}) ...", flush=True)
        execute(path, smoke=args.smoke, save_to=None if args.smoke else path)
        print(f"  done in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
