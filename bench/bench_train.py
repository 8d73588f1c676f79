"""Training speed of the CPU presets, and the model FLOP utilisation (MFU) it amounts to.

    .venv/bin/python bench/bench_train.py                       # about 2 minutes on 2 quiet CPU cores
    .venv/bin/python bench/bench_train.py --quick               # a smoke check, well under a minute
    .venv/bin/python bench/bench_train.py --equal-time          # + val loss after 100 s per preset
    .venv/bin/python bench/bench_train.py --equal-time --minutes 1.67 10   # the 100 s / 10 min table

Speed: each preset's real training steps (the loop of nanogpt.train.train: batches, forward,
backward, clipping, optimizer; no evaluation) are timed from the run's log after a warm-up. MFU
divides the model's FLOPs per second by a peak measured in the same run: a large fp32 matmul on
the same threads (the best this machine's BLAS does, so MFU here is "how close to a big matmul",
not to the datasheet).
A GPT step costs about 6N + 12 L T C FLOPs per token (N parameters without the position table;
the second term is attention; nanoGPT's estimate_mfu), an MLP step 6N.

Equal time: each GPT CPU preset trains with --max-minutes M (its schedule fitted to the
budget) and reports its final val loss (the whole val split). On a shared machine both the
speed and the losses at equal time come out pessimistic.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

import torch

from nanogpt.checkpoint import load_model
from nanogpt.config import preset
from nanogpt.train import train


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
    """Tokens/s and MFU of every CPU preset (and gpt-cpu with bfloat16 autocast)."""
    scale = 0.2 if quick else 1.0
    rows = [("gpt-cpu", {}, 20), ("gpt-cpu", {"dtype": "bfloat16"}, 20), ("gpt-cpu-fast", {}, 40),
            ("mlp", {}, 2000), ("bigram", {}, 2000)]
    peaks = {}
    print("| preset | dtype | threads | ms/step | tokens/s | MFU vs fp32 matmul |")
    print("|---|---|---|---|---|---|")
    for name, overrides, steps in rows:
        r = time_steps(name, max(3, int(steps * scale)), **overrides)
        if r["threads"] not in peaks:
            peaks[r["threads"]] = matmul_peak(r["threads"])
        mfu = r["flops"] * r["tok_s"] / peaks[r["threads"]] if name != "bigram" else float("nan")
        dtype = overrides.get("dtype", "float32")
        mfu_text = "n/a (a lookup)" if name == "bigram" else f"{mfu:.1%}"
        print(f"| {name} | {dtype} | {r['threads']} | {r['step_ms']:.1f} | {r['tok_s']:,.0f} | "
              f"{mfu_text} |", flush=True)
    print("\nfp32 matmul peak (2048^3, best of 5): " + "; ".join(
        f"{threads} thread(s) {peak / 1e9:.1f} GFLOP/s" for threads, peak in sorted(peaks.items())))


def equal_time_table(minutes: list[float]) -> None:
    """The final val loss of each GPT CPU preset after the same wall time."""
    print("\n| preset | budget | steps | val loss (whole split) | wall s |")
    print("|---|---|---|---|---|")
    for m in minutes:
        for name in ("gpt-cpu-fast", "gpt-cpu"):
            with tempfile.TemporaryDirectory() as out, redirect_stdout(io.StringIO()):
                r = train(preset(name, max_minutes=m, out_dir=out), progress=False)
            print(f"| {name} | {m * 60:.0f} s | {r['iters']} | {r['val_loss']:.4f} | "
                  f"{r['seconds']:.0f} |", flush=True)


def main(argv=None) -> None:
    """Print the markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a fifth of the steps: a smoke check")
    ap.add_argument("--equal-time", action="store_true",
                    help="also train the GPT CPU presets for --minutes each and compare val losses")
    ap.add_argument("--minutes", type=float, nargs="+", default=[100 / 60],
                    help="budgets for --equal-time (100 s by default; the long table adds 10)")
    args = ap.parse_args(argv)
    speed_table(args.quick)
    if args.equal_time:
        equal_time_table(args.minutes)


if __name__ == "__main__":
    main()
