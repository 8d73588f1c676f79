"""What every command line of the course shares: the parser, the common flags, the error wrapper.

    parser = cli.parser("python -m nanogpt.sample", "Generate text from a checkpoint.")
    cli.add_ckpt(parser); cli.add_seed(parser); cli.add_device(parser)
    ...
    def main(argv=None) -> int:
        return cli.invoke(work, parser, argv)   # `error: ...` on stderr and exit 2 for a UserError

A user's mistake (a bad flag value, a missing checkpoint, data not found) is a `UserError`; it
becomes one line on stderr and exit status 2, never a traceback. Programming errors keep theirs.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from nanogpt.errors import UserError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each flag's help; the description and epilog kept as written.

    A default of None says nothing, and a help that already names its default keeps its own words,
    so no flag reads "(default: all) (default: None)"."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or "default" in text or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag becomes a one-line UserError instead of usage text."""

    def error(self, message):
        raise UserError(message)


def parser(prog: str, description: str, epilog: str | None = None) -> Parser:
    """A parser whose --help shows every default."""
    return Parser(prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter)


def add_ckpt(p: argparse.ArgumentParser, default: str) -> None:
    """--ckpt: a checkpoint file, or a run folder standing for its best.pt."""
    p.add_argument("--ckpt", default=default, help="checkpoint file, or a run folder (its best.pt)")


def add_device(p: argparse.ArgumentParser) -> None:
    """--device: where to run."""
    p.add_argument("--device", type=device_name, default="auto",
                   help="auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps")


def add_seed(p: argparse.ArgumentParser, default: int = 1337, help: str = "seed of every random draw"):
    """--seed: every random draw starts from it."""
    p.add_argument("--seed", type=seed_number, default=default, help=help)


# ----------------------------------------------------------------------------- argument types

DEVICES = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
MAX_SEED = 2**63 - 1  # torch's generators take a signed 64-bit seed


def device_name(text: str) -> str:
    """An argparse type: auto, cpu, mps, cuda or cuda:N (whether it exists is checked later)."""
    if not DEVICES.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda, cuda:N or mps, not {text!r}")
    return text


def seed_number(text: str) -> int:
    """An argparse type: a seed in 0 .. 2^63 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2^63 - 1, not {value}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number of at least 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, not {text}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def check_output_path(path, flag: str) -> Path:
    """An output file's path checked before the work starts: not a folder, and in a folder that
    exists (or can be made) and can be written."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot make its folder ({e.strerror or e})") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{flag} {path}: cannot write there")
    return path


def invoke(work: Callable[[argparse.Namespace], int | None], p: argparse.ArgumentParser, argv=None) -> int:
    """Parse argv, call work(args); a UserError becomes `error: ...` on stderr and exit status 2,
    Ctrl-C before work could handle it becomes `interrupted` and 130."""
    try:
        return work(p.parse_args(argv)) or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
