"""The loss ladder: each stage's train and val loss, measured by one script, printed as markdown.

    python -m nanogpt.course.ladder                  # both tables in full (about 35 min on a 2-core CPU)
    python -m nanogpt.course.ladder --quick          # every row for a few hundred steps: does it all run?
    python -m nanogpt.course.ladder --rows names-naive names-kaiming --out ladder.md
    python -m nanogpt.course.ladder --with-gpt       # add the GPT row from runs/gpt-cpu (`make train` first)

Two tables. "names" replays the loss log of makemore part 3: the same MLP trained five times,
one fix at a time, next to the lecture's numbers. "shakespeare" climbs one dataset stage by
stage: count bigram, neural bigram, MLP, and (with --with-gpt) the Transformer.

Every trained row is one call to the engine, `nanogpt.train.train`, and prints the command that
reproduces it alone. Losses are on the full train and val splits. The README's tables are this
script's output, pasted as printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import torch

from nanogpt import cli
from nanogpt.bigram import CountBigram
from nanogpt.checkpoint import load_model
from nanogpt.checks import dashed
from nanogpt.config import PRESETS, preset
from nanogpt.data import Batches, load_text, split_text
from nanogpt.errors import UserError
from nanogpt.tokenizer import CharTokenizer
from nanogpt.train import mean_loss, train

# makemore part 3's recipe: context 3, embeddings of 10, 200 tanh units, batch 32, plain SGD
# for 200k steps with the learning rate cut from 0.1 to 0.01 halfway (the lecture: `lr = 0.1 if
# i < 100000 else 0.01`).
NAMES = dict(data="names", block_size=3, n_embd=10, n_hidden=200, n_layer=1, batch_size=32,
             optimizer="sgd", lr=0.1, lr_schedule="step", step_decay_at=0.5, max_iters=200_000)

# Tiny Shakespeare. The neural bigram's weight decay pulls its logits towards zero (towards the
# uniform guess), the network's version of the count model's add-one smoothing: without it the
# table fits rare pairs too well and validates about 0.012 worse than the smoothed counts.
BIGRAM = dict(weight_decay=0.05, max_iters=3000)
# The MLP: the best of a small sweep at 20k steps (val, full split): batch 128 1.796 against
# batch 32 1.894; without BatchNorm 1.759; context 12 or 16, or one layer of 512, did worse.
MLP = dict(block_size=8, n_embd=24, n_hidden=256, n_layer=2, batchnorm=False, batch_size=128,
           max_iters=20_000)


@dataclass
class Row:
    """One rung of the ladder: a named training run (or the count model) and its reference losses."""

    key: str
    label: str  # may name settings, as in "{block_size}": filled in with the run's values
    preset: str | None  # the engine's preset; None for the count bigram, which is not trained
    settings: dict = field(default_factory=dict)  # on top of the preset
    reference: tuple[float, float] | None = None  # (train, val) from the lecture


ROWS = [
    # train/val losses printed in makemore part 3's "loss log" (nn-zero-to-hero)
    Row("names-naive", "naive init: every weight ~ N(0, 1)", "mlp",
        {**NAMES, "init": "naive", "batchnorm": False}, (2.1245, 2.1682)),
    Row("names-softmax", "fix softmax: last layer x0.01, bias 0", "mlp",
        {**NAMES, "init": "softmax_fix", "batchnorm": False}, (2.07, 2.13)),
    Row("names-tanh", "fix tanh saturation: hidden x0.2", "mlp",
        {**NAMES, "init": "tanh_fix", "batchnorm": False}, (2.0356, 2.1027)),
    Row("names-kaiming", "Kaiming init: gain 5/3 / sqrt(fan_in)", "mlp",
        {**NAMES, "init": "kaiming", "batchnorm": False}, (2.0377, 2.1070)),
    Row("names-batchnorm", "Kaiming + BatchNorm", "mlp",
        {**NAMES, "init": "kaiming", "batchnorm": True}, (2.0668, 2.1048)),
    Row("shakespeare-count", "count bigram (add-one smoothing)", None),
    Row("shakespeare-bigram", "neural bigram", "bigram", BIGRAM),
    Row("shakespeare-mlp", "MLP: context {block_size}, {n_layer} x {n_hidden} tanh, batch {batch_size}",
        "mlp", MLP),
]
ROW_KEYS = [row.key for row in ROWS]
# Settings that change where or how fast a run goes, never its losses: left out of the commands.
QUIET = dict(device="cpu", threads=1, log_interval=1000)
GPT_RUN = "runs/gpt-cpu"  # where `make train` (preset gpt-cpu) leaves its run


@dataclass
class Result:
    """A row's measured losses, with what it took and how to reproduce it."""

    row: Row
    label: str
    train: float
    val: float
    params: int
    seconds: float
    command: str


# ----------------------------------------------------------------------------- running the rows


def command_for(row: Row, settings: dict) -> str:
    """The `python -m nanogpt.train` line for a row: its preset and every setting that differs."""
    base, parts = PRESETS[row.preset], [f"python -m nanogpt.train --preset {row.preset}"]
    for name, value in settings.items():
        if name in QUIET or value == getattr(base, name):
            continue
        if isinstance(value, bool):
            parts.append(f"--{'' if value else 'no-'}{dashed(name)}")
        else:
            parts.append(f"--{dashed(name)} {value}")
    return " ".join(parts)


def full_split_losses(cfg, model) -> dict:
    """Train and val loss of a model on every token of both splits (the engine's own evaluation)."""
    data = Batches(cfg)
    return {split: mean_loss(model, data.full(split), "cpu") for split in ("train", "val")}


def run_engine_row(row: Row, args) -> Result:
    """Train one row through the engine; losses on the full splits."""
    settings = {**row.settings, "seed": args.seed}
    if args.steps:
        settings["max_iters"] = args.steps
    if args.quick and row.key == "shakespeare-mlp":  # its full train split is a million examples
        settings.update(n_hidden=32, n_layer=1)
    steps = settings.get("max_iters", PRESETS[row.preset].max_iters)
    # evaluate at the start and the end only; the final losses are on the full splits anyway
    cfg = preset(row.preset, **settings, **QUIET, eval_interval=steps, eval_iters=5 if args.quick else 20,
                 out_dir=str(Path(args.out_dir) / row.key))
    t0 = time.time()
    with redirect_stdout(sys.stderr):  # the engine's log lines go to stderr; stdout is the tables
        result = train(cfg, progress=False)
    seconds = time.time() - t0
    model, _, _ = load_model(Path(result["out_dir"]) / "last.pt")
    losses = {"train": result["train_loss"], "val": result["val_loss"]}
    if cfg.stage == "bigram":  # running text: the engine estimates train on a few batches; count all
        losses = full_split_losses(cfg, model)
    params = sum(p.numel() for p in model.parameters())
    label = row.label.format(**cfg.to_dict())
    return Result(row, label, losses["train"], losses["val"], params, seconds, command_for(row, settings))


def run_count_bigram(row: Row) -> Result:
    """Fit the count bigram on Tiny Shakespeare's train split: no steps, just counting."""
    t0 = time.time()
    text = load_text("shakespeare")
    tok = CharTokenizer.from_text(text)
    train_ids, val_ids = split_text(torch.tensor(tok.encode(text)))
    model = CountBigram(tok.vocab_size, smoothing=1.0).fit([train_ids])
    return Result(row, row.label, model.nll([train_ids]), model.nll([val_ids]), model.counts.numel(),
                  time.time() - t0, f"python -m nanogpt.course.ladder --rows {row.key}")


def gpt_row(run_dir: str) -> Result | None:
    """The GPT's losses from a finished run's metrics.jsonl, or None when there is none."""
    metrics = Path(run_dir) / "metrics.jsonl"
    if not metrics.is_file():
        return None
    records = []
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a killed run: the rest still counts
            continue
    final = [r for r in records if r.get("kind") == "final"]
    if not final:
        return None
    times = [r["time"] for r in records if "time" in r]
    params = 0
    if (Path(run_dir) / "last.pt").is_file():
        params = sum(p.numel() for p in load_model(Path(run_dir) / "last.pt")[0].parameters())
    row = Row("shakespeare-gpt", "GPT (train: estimate on fixed batches)", "gpt-cpu")
    return Result(row, row.label, final[-1]["train_loss"], final[-1]["val_loss"], params,
                  times[-1] if times else float("nan"), "python -m nanogpt.train --preset gpt-cpu")


# ----------------------------------------------------------------------------- the tables


def names_table(results: list[Result], args) -> str:
    """makemore part 3's loss log, ours beside the lecture's."""
    steps = args.steps or NAMES["max_iters"]
    lines = [f"Names (makemore part 3): MLP with context 3, 10-d embeddings, 200 tanh units; SGD, "
             f"batch 32, lr 0.1 then 0.01 from step {int(steps * NAMES['step_decay_at']):,}; "
             f"{steps:,} steps; seed {args.seed}; losses on the full 80% train and 10% val splits.",
             "",
             "| step | train | val | lecture train | lecture val | val - lecture | time | command |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        ref_train, ref_val = r.row.reference
        lines.append(f"| {r.label} | {r.train:.4f} | {r.val:.4f} | {ref_train:.4f} | {ref_val:.4f} | "
                     f"{r.val - ref_val:+.4f} | {r.seconds / 60:.1f} min | `{r.command}` |")
    return "\n".join(lines)


def shakespeare_table(results: list[Result], args) -> str:
    """One dataset, stage by stage."""
    lines = [f"Tiny Shakespeare, characters (vocab 65), first 90% train / last 10% val; seed {args.seed}; "
             "losses on the full splits.",
             "",
             "| model | parameters | train | val | time | command |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.label} | {r.params:,} | {r.train:.4f} | {r.val:.4f} | "
                     f"{r.seconds / 60:.1f} min | `{r.command}` |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """The ladder's flags."""
    parser = cli.parser("python -m nanogpt.course.ladder", __doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=ROW_KEYS, default=ROW_KEYS, metavar="ROW",
                        help=f"rows to run, of: {' '.join(ROW_KEYS)}")
    parser.add_argument("--steps", type=cli.positive_int, default=None,
                        help="steps for every trained row (default: each row's own; names 200000)")
    parser.add_argument("--quick", action="store_true",
                        help="a fast check: 300 steps a row (unless --steps) and a smaller Shakespeare MLP")
    cli.add_seed(parser, help="seed of every run")
    parser.add_argument("--out-dir", default="runs/ladder", help="folder for the rows' run folders")
    parser.add_argument("--out", default=None, help="also write the tables to this markdown file")
    parser.add_argument("--with-gpt", action="store_true",
                        help=f"add the GPT row from {GPT_RUN}/metrics.jsonl (train it with `make train`)")
    parser.add_argument("--gpt-run", default=GPT_RUN, help="the GPT run folder read by --with-gpt")
    return parser


def build_tables(args) -> str:
    """Run the chosen rows and return the markdown tables."""
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be at least 1, not {args.steps}")
    if args.quick and args.steps is None:
        args.steps = 300
    results = []
    for row in ROWS:
        if row.key not in args.rows:
            continue
        print(f"ladder: {row.key} ...", file=sys.stderr, flush=True)
        result = run_count_bigram(row) if row.preset is None else run_engine_row(row, args)
        print(f"ladder: {row.key}: train {result.train:.4f}, val {result.val:.4f} "
              f"({result.seconds:.0f} s)", file=sys.stderr, flush=True)
        results.append(result)
    names = [r for r in results if r.row.key.startswith("names")]
    shakespeare = [r for r in results if r.row.key.startswith("shakespeare")]
    notes = []
    if args.with_gpt:  # the last rung: the Transformer, trained separately by `make train`
        gpt = gpt_row(args.gpt_run)
        if gpt is None:
            notes.append(f"(no finished GPT run in {args.gpt_run}: run `make train`, then --with-gpt)")
        else:
            shakespeare.append(gpt)
    tables = []
    if names:
        tables.append(names_table(names, args))
    if shakespeare:
        tables.append(shakespeare_table(shakespeare, args))
    return "\n\n".join(tables + notes) + "\n"


def main(argv=None) -> int:
    """The command line: `python -m nanogpt.course.ladder --help`."""
    return cli.invoke(run_and_print, build_parser(), argv)


def run_and_print(args) -> None:
    """Run the rows, print the tables, and write them to --out if asked (checked first)."""
    if args.out:
        cli.check_output_path(args.out, "--out")
    markdown = build_tables(args)
    if args.out:
        Path(args.out).write_text(markdown, encoding="utf-8")
    print(markdown, end="")


if __name__ == "__main__":
    sys.exit(main())
