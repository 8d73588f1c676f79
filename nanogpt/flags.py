"""The command line of `python -m nanogpt.train`: one flag per TrainConfig field, over a preset.

    cfg = config_from_args(["--preset", "smoke", "--max-iters", "7"])
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from nanogpt import cli
from nanogpt.checks import dashed
from nanogpt.config import PRESET_NOTES, PRESETS, TrainConfig, default_preset, preset


def build_parser() -> argparse.ArgumentParser:
    """One flag per TrainConfig field; the defaults shown are those of the default CPU preset."""
    shown = PRESETS["gpt-cpu"]
    description = ("Train a model, from the bigram to the GPT, with one loop. Start from a --preset "
                   "and override any of its settings with the flags below; the defaults shown are "
                   "the gpt-cpu preset's.")
    epilog = "presets:\n" + "\n".join(f"  {k:13s} {v}" for k, v in PRESET_NOTES.items()) + (
        "\n\nWith --resume the run in --out-dir continues exactly from its last.pt, with the "
        "settings saved there\n(only device, compile, threads, diag and diag_every may change).")
    parser = cli.parser("python -m nanogpt.train", description, epilog)
    parser.add_argument("--preset", default=argparse.SUPPRESS,
                        help="settings to start from (default: gpt-gpu with CUDA, else gpt-cpu)")
    for f in fields(TrainConfig):
        if f.name == "preset":
            continue
        default = getattr(shown, f.name)
        kind = {"bool": bool, "int": int, "float": float, "str": str}[f.type]
        text = f.metadata["help"]
        if "default" not in text:  # a help that names its own default keeps its words
            text += f" (default: {default!r})"
        if kind is bool:
            parser.add_argument(f"--{dashed(f.name)}", action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=text)
        elif f.metadata.get("bare") is not None:  # --compile alone = --compile on; --no-compile
            parser.add_argument(f"--{dashed(f.name)}", nargs="?", const=f.metadata["bare"],
                                default=argparse.SUPPRESS, metavar=f.name.upper(), help=text)
            parser.add_argument(f"--no-{dashed(f.name)}", dest=f.name, action="store_const",
                                const=f.default, default=argparse.SUPPRESS,
                                help=f"--{dashed(f.name)} {f.default}")
        else:
            parser.add_argument(f"--{dashed(f.name)}", type=kind, default=argparse.SUPPRESS,
                                metavar=f.name.upper(), help=text)
    return parser


def config_from_args(argv=None) -> TrainConfig:
    """The TrainConfig that a command line asks for: a preset, then its overrides, checked."""
    return config_from_namespace(build_parser().parse_args(argv))


def config_from_namespace(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed flags: the preset named (or the default one), then the flags given."""
    given = dict(vars(args))
    name = given.pop("preset", None) or default_preset()
    return preset(name, **given)
