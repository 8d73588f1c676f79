"""Training speed of the CPU presets, and the model FLOP utilisation (MFU) it amounts to.

    .venv/bin/python bench/bench_train.py                       # about 2 minutes on 2 quiet CPU cores
    .venv/bin/python bench/bench_train.py --quick               # a smoke check, well under a minute
    .venv/bin/python bench/bench_train.py --equal-time          # + one row per lever, each preset's budget
    .venv/bin/python bench/bench_train.py --equal-time --no-speed --minutes 1.67 10 --seeds 1337 2
                                                                # README's ladder: 100 s, 10 min, two seeds
    .venv/bin/python bench/bench_train.py --equal-time --no-speed --presets gpt-cpu-fast \
        --variants default muon optimizer=muon,muon_lr=0.05 --minutes 1.67   # a screening

Speed: each preset's real training steps (the loop of nanogpt.train.train: batches, forward,
backward, clipping, optimizer; no evaluation) are timed from the run's log after a warm-up. MFU
divides the model's FLOPs per second by a peak measured in the same run: a large fp32 matmul on
the same threads (the best this machine's BLAS does, so MFU here is "how close to a big matmul",
not to the datasheet).
A GPT step costs about 6N + 12 L T C FLOPs per token (N parameters without the position table;
the second term is attention; nanoGPT's estimate_mfu), an MLP step 6N.

Equal time: one row per lever, each row one change on top of the row above (a ladder from the
old defaults to the new: LADDERS below, each preset's own). Each variant is a named set of
TrainConfig overrides on top of a GPT CPU preset (VARIANTS below; `default` is the preset as it
is); each trains once per --seeds seed (the table shows each run and their mean, and compares
means) with --max-minutes M
(its schedule fitted to the budget; M is the preset's own budget, the one `make train` uses,
unless --minutes gives one budget for all or one per preset, in order) and reports its steps,
final val loss (the whole val split), the change against the row above in the same run, its
wall time (start-up, compilation and the final evaluation included) and its final train loss
(how far it is below val shows the overfitting). On a shared machine both
the speed and the losses at equal time come out pessimistic, and variants run later meet a
different load.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import tempfile
import time
from contextlib import redirect_stdout
from dataclasses import fields
from pathlib import Path

import torch

from nanogpt.checkpoint import load_model
from nanogpt.config import PRESETS, TrainConfig, preset
from nanogpt.errors import UserError
from nanogpt.precision import pick_dtype
from nanogpt.train import train

# The levers, each a set of overrides on top of a preset: name -> (row label, overrides). The
# first four are the ladder from the first release's default to this one's, one lever per row.
# gpt-cpu's shape before, and its schedule's floor before (the cosine down to lr / 10)
_CONTEXT_128_FP32 = {"block_size": 128, "batch_size": 32, "dtype": "float32", "min_lr": 3e-4}
_CONTEXT_256_FP32 = {"block_size": 256, "batch_size": 16, "dtype": "float32"}  # gpt-cpu's shape now
VARIANTS = {
    "adamw": ("AdamW, float32 (the first default)", {"optimizer": "adamw", "dtype": "float32"}),
    "muon-fp32": ("+ Muon (lr 0.02), float32", {"optimizer": "muon", "dtype": "float32",
                                                 "muon_weight_decay": 0.0}),
    "muon-bf16": ("+ bfloat16 autocast", {"optimizer": "muon", "dtype": "bfloat16",
                                           "muon_weight_decay": 0.0}),
    "default": ("the preset as it is", {}),
    # this release's ladder for gpt-cpu, from the default of 2026-12-02 on a CPU without AMX
    "learned-128": ("learned positions, context 128 x batch 32, float32 (the default before)",
                    {**_CONTEXT_128_FP32, "position": "learned"}),
    "rotary-128": ("+ rotary positions", {**_CONTEXT_128_FP32, "position": "rotary"}),
    "context-256": ("+ context 256 x batch 16, float32", {**_CONTEXT_256_FP32, "min_lr": 3e-4}),
    "min-lr-0": ("+ learning rates decayed to 0 (min_lr 0), float32", {**_CONTEXT_256_FP32, "min_lr": 0.0}),
    # single levers on top of the preset, for screening
    "muon": ("+ muon (lr 0.02)", {"optimizer": "muon"}),
    "muon-0.01": ("+ muon (lr 0.01)", {"optimizer": "muon", "muon_lr": 0.01}),
    "muon-0.05": ("+ muon (lr 0.05)", {"optimizer": "muon", "muon_lr": 0.05}),
    "bf16": ("+ bf16 autocast", {"dtype": "bfloat16"}),
    "fp32": ("+ float32", {"dtype": "float32"}),
    "compile": ("+ compile", {"compile": "on"}),
    "nanogpt-lr": ("+ lr 2e-3 (nanoGPT's)", {"lr": 2e-3, "min_lr": 2e-4}),
    "tied": ("+ tied head (nanoGPT's)", {"tie_weights": True}),
}
# `--variants ladder` (the default): each preset's own ladder, from the first default (gpt-cpu-fast)
# or the last one (gpt-cpu) to the preset as it is, one change per row; the last gpt-cpu row adds
# dtype auto (bfloat16 autocast where the CPU has AMX, so equal to the row above elsewhere).
LADDERS = {"gpt-cpu-fast": ("adamw", "default"),
           "gpt-cpu": ("learned-128", "rotary-128", "context-256", "min-lr-0", "default"),
           "smoke": ("default",)}


def matmul_peak(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of the best of `repeats` (n x n) @ (n x n) fp32 matmuls."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up: thread pool, caches
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def flops_per_token(cfg, model) -> float:
    """Training FLOPs per token: 6N (+ 12 L T C for a GPT's attention)."""
    if cfg.stage == "gpt":
        n = model.num_params()  # without the position table: a lookup, not a matmul
        return 6 * n + 12 * cfg.n_layer * cfg.block_size * cfg.n_embd
    return 6 * sum(p.numel() for p in model.parameters())


def time_steps(name: str, steps: int, **overrides) -> dict:
    """Tokens per second of a preset's real training steps (the loop of nanogpt.train.train, with
    no evaluation in between), timed from the run's own log records after a warm-up."""
    warmup = max(2, steps // 10)
    steps = max(1, round(steps / warmup)) * warmup  # log every `warmup` steps: first record = warm
    with tempfile.TemporaryDirectory() as out:
        cfg = preset(name, out_dir=out, eval_iters=1, eval_interval=10**6, log_interval=warmup,
                     max_iters=warmup + steps, max_minutes=0.0, **overrides)
        with redirect_stdout(io.StringIO()):  # the run's own description: not part of the table
            train(cfg, progress=False)
        records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
        times = [r["time"] for r in records if r["kind"] == "train"]
        model = load_model(Path(out) / "last.pt")[0]
    wall = times[-1] - times[0]
    tokens = steps * cfg.grad_accum * cfg.batch_size * (cfg.block_size if cfg.stage == "gpt" else 1)
    return {"tok_s": tokens / wall, "flops": flops_per_token(cfg, model),
            "threads": torch.get_num_threads(), "step_ms": 1e3 * wall / steps}


def speed_table(quick: bool) -> None:
    """Tokens/s and MFU of every CPU preset (and gpt-cpu in float32, with AdamW, compiled)."""
    scale = 0.2 if quick else 1.0
    rows = [("gpt-cpu", {}, 20), ("gpt-cpu", {"dtype": "float32"}, 20),
            ("gpt-cpu", {"optimizer": "adamw", "dtype": "float32"}, 20), ("gpt-cpu", {"compile": "on"}, 20),
            ("gpt-cpu-fast", {}, 40), ("mlp", {}, 2000), ("bigram", {}, 2000)]
    peaks = {}
    print("| preset | settings | threads | ms/step | tokens/s | MFU vs fp32 matmul |")
    print("|---|---|---|---|---|---|")
    for name, overrides, steps in rows:
        r = time_steps(name, max(3, int(steps * scale)), **overrides)
        if r["threads"] not in peaks:
            peaks[r["threads"]] = matmul_peak(r["threads"])
        mfu = r["flops"] * r["tok_s"] / peaks[r["threads"]] if name != "bigram" else float("nan")
        dtype = pick_dtype(PRESETS[name].dtype, "cpu")
        settings = ", ".join(f"{k} {v}" for k, v in overrides.items()) or f"as preset ({dtype})"
        mfu_text = "n/a (a lookup)" if name == "bigram" else f"{mfu:.1%}"
        print(f"| {name} | {settings} | {r['threads']} | {r['step_ms']:.1f} | {r['tok_s']:,.0f} | "
              f"{mfu_text} |", flush=True)
    print("\nfp32 matmul peak (2048^3, best of 5): " + "; ".join(
        f"{threads} thread(s) {peak / 1e9:.1f} GFLOP/s" for threads, peak in sorted(peaks.items())))


def variant(spec: str) -> tuple[str, dict]:
    """A row of the equal-time table: a name of VARIANTS, or `key=value,...` (TrainConfig fields)."""
    if spec in VARIANTS:
        return VARIANTS[spec]
    if "=" not in spec:
        raise UserError(f"unknown variant {spec!r} (variants: {', '.join(VARIANTS)}, or key=value,...)")
    kinds = {"bool": bool, "int": int, "float": float, "str": str}
    types = {f.name: kinds[f.type] for f in fields(TrainConfig)}
    overrides = {}
    for item in spec.split(","):
        key, _, value = item.partition("=")
        if key not in types:
            raise UserError(f"variant {spec!r}: no setting {key!r}")
        kind = types[key]
        try:
            overrides[key] = value.lower() in ("1", "true", "yes", "on") if kind is bool else kind(value)
        except ValueError:
            raise UserError(f"variant {spec!r}: {key} takes a {kind.__name__}, not {value!r}") from None
    return "+ " + spec, overrides


def budgets(presets: list[str], minutes: list[float] | None) -> list[float]:
    """Each preset's budget: its own --max-minutes, the one --minutes given, or one per preset."""
    if not minutes:
        return [PRESETS[name].max_minutes for name in presets]
    if len(minutes) == 1:
        return minutes * len(presets)
    if len(minutes) != len(presets):
        raise UserError(f"--minutes: give one budget, or one per preset ({len(presets)}), not {len(minutes)}")
    return minutes


def equal_time_table(presets: list[str], variants: list[str], minutes: list[float] | None,
                     seeds: list[int] | None = None) -> None:
    """The final val loss of each variant of each preset after the same wall time, once per seed."""
    print("\n| preset | variant | budget | seeds | steps | val loss (whole split) | mean val "
          "| vs the row above | wall s | train loss |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, m in zip(presets, budgets(presets, minutes), strict=True):
        above = math.nan  # the row above's mean val loss: each row is one change on top of it
        for label, overrides in rows(name, variants):
            runs = []
            for seed in seeds or [None]:
                with_seed = overrides if seed is None else {**overrides, "seed": seed}
                with tempfile.TemporaryDirectory() as out, redirect_stdout(io.StringIO()):
                    runs.append(train(preset(name, **{**with_seed, "max_minutes": m, "out_dir": out}),
                                      progress=False))
            mean = sum(r["val_loss"] for r in runs) / len(runs)
            delta = "" if math.isnan(above) else f"{mean - above:+.4f}"
            above = mean
            budget = f"{m * 60:.0f} s" if m else "no budget"
            seed_text = (" / ".join(str(s) for s in seeds) if seeds
                         else str(overrides.get("seed", PRESETS[name].seed)))  # a `seed=2` row says so
            print(f"| {name} | {label} | {budget} | {seed_text} | {_each(runs, 'iters', 'd')} | "
                  f"{_each(runs, 'val_loss', '.4f')} | {mean:.4f} | {delta} | "
                  f"{_each(runs, 'seconds', '.0f')} | {_each(runs, 'train_loss', '.4f')} |", flush=True)


def _each(runs: list[dict], key: str, fmt: str) -> str:
    """One column of a row: each seed's value, in order."""
    return " / ".join(format(r[key], fmt) for r in runs)


def rows(name: str, variants: list[str]) -> list[tuple[str, dict]]:
    """The rows of one preset: its own ladder for `ladder`, else the variants given."""
    specs = [s for v in variants for s in (LADDERS.get(name, ("default",)) if v == "ladder" else (v,))]
    return [variant(s) for s in specs]


def main(argv=None) -> None:
    """Print the markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a fifth of the steps: a smoke check")
    ap.add_argument("--no-speed", action="store_true", help="skip the speed table")
    ap.add_argument("--equal-time", action="store_true",
                    help="also train each variant of each preset for the same wall time; compare val losses")
    ap.add_argument("--presets", nargs="+", default=["gpt-cpu-fast", "gpt-cpu"],
                    choices=["gpt-cpu-fast", "gpt-cpu", "smoke"], help="presets for --equal-time")
    ap.add_argument("--variants", nargs="+", default=["ladder"], metavar="NAME",
                    help=f"rows for --equal-time: ladder (each preset's own: {LADDERS}), "
                         f"{', '.join(VARIANTS)}, or key=value,... overrides")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="train every row once per seed; the table shows each and their mean "
                         "(default: the preset's seed, once)")
    ap.add_argument("--minutes", type=float, nargs="+", default=None,
                    help="budgets for --equal-time: one for every preset, or one per preset in the order of "
                         "--presets (default: each preset's own --max-minutes)")
    args = ap.parse_args(argv)
    try:  # a typo fails now, not after an hour of the other rows
        for name in args.presets:
            for _, overrides in rows(name, args.variants):
                preset(name, **overrides)
        budgets(args.presets, args.minutes)
    except UserError as e:
        ap.error(str(e))
    if not args.no_speed:
        speed_table(args.quick)
    if args.equal_time:
        equal_time_table(args.presets, args.variants, args.minutes, args.seeds)


if __name__ == "__main__":
    main()
