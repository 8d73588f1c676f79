"""How much faster batched integrated gradients is than one computation per character.

    .venv/bin/python bench/bench_attribution.py            # a few minutes on 2 quiet CPU cores
    .venv/bin/python bench/bench_attribution.py --quick    # under a minute: a smoke check

A randomly initialised GPT of the gpt-cpu preset's shape (speed does not depend on training)
generates the text from a one-character prompt; then every generated character is attributed to
its window with integrated gradients (Gauss-Legendre, 32 steps), by `attribute` (every (alpha,
target) pair a row of a batch, `--batch-size` rows a pass) and by `attribute_loop` (one
character at a time, its alphas in passes of the same size), and on the shortest text also by
the textbook loop, one pass per (character, alpha). All figures come from this one run.

What to expect: both do the same arithmetic (each pair runs its target's window forward and
back once), so the batched path wins only what fewer, larger passes save: per-operator
overhead, and the threads' hand-offs on a busy machine. Its cost grows like the sum of the
window lengths: quadratically up to block_size characters, then linearly.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nanogpt.attribution import attribute, attribute_loop
from nanogpt.config import PRESETS
from nanogpt.gpt import GPT, GPTConfig
from nanogpt.sample import generate


def gpt_cpu_shaped() -> GPT:
    """A randomly initialised GPT with the gpt-cpu preset's shape, in eval mode."""
    p = PRESETS["gpt-cpu"]
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=65, block_size=p.block_size, n_layer=p.n_layer, n_head=p.n_head,
                    n_embd=p.n_embd, bias=p.bias)
    return GPT(cfg).eval()


def timed(fn, *args, **kw):
    """(wall seconds, CPU seconds, result) of one call. CPU time counts only this process's work,
    so on a shared machine it is the steadier figure (with one thread it is the work itself)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main(argv=None) -> None:
    """Print the markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short texts and 4 steps")
    ap.add_argument("--steps", type=int, default=32, help="quadrature points (--quick: 4)")
    ap.add_argument("--batch-size", type=int, default=64, help="rows per pass, for both paths")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = 4 if args.quick else args.steps
    lengths = (16, 32) if args.quick else (50, 100, 200)
    model = gpt_cpu_shaped()
    prompt = torch.zeros(1, 1, dtype=torch.long)
    text = generate(model, prompt, max(lengths), generator=torch.Generator().manual_seed(0),
                    keep=model.config.block_size)[0]
    attribute(model, text[:8], steps=2)  # warm up
    print(f"GPT {model.config.n_layer} layers x {model.config.n_embd} wide, block "
          f"{model.config.block_size}, float32; Gauss-Legendre {steps} steps; "
          f"batch {args.batch_size} rows; {torch.get_num_threads()} threads\n")
    print("| characters | loop s (CPU s) | batched s (CPU s) | loop / batched, wall "
          "| loop / batched, CPU | batched CPU / shortest's | max abs difference |")
    print("|---|---|---|---|---|---|---|")
    first = None
    for n in lengths:
        ids = text[: n + 1]  # n generated characters after the prompt
        w_loop, c_loop, slow = timed(attribute_loop, model, ids, steps=steps, batch_size=args.batch_size)
        w_fast, c_fast, fast = timed(attribute, model, ids, steps=steps, batch_size=args.batch_size)
        first = first or c_fast
        diff = np.abs(fast.scores - slow.scores).max()
        print(f"| {n} | {w_loop:.1f} ({c_loop:.1f}) | {w_fast:.1f} ({c_fast:.1f}) | "
              f"{w_loop / w_fast:.2f}x | {c_loop / c_fast:.2f}x | {c_fast / first:.1f}x | {diff:.1e} |",
              flush=True)
    # The textbook loop, one pass per (character, alpha), on the shortest text only.
    n = lengths[0]
    w_one, c_one, _ = timed(attribute_loop, model, text[: n + 1], steps=steps, batch_size=1)
    w_fast, c_fast, _ = timed(attribute, model, text[: n + 1], steps=steps, batch_size=args.batch_size)
    print(f"\n| characters | one pass per (character, alpha): s (CPU s) | batched: s (CPU s) "
          f"| ratio, wall | ratio, CPU |\n|---|---|---|---|---|\n"
          f"| {n} | {w_one:.1f} ({c_one:.1f}) | {w_fast:.1f} ({c_fast:.1f}) | {w_one / w_fast:.1f}x "
          f"| {c_one / c_fast:.1f}x |")


if __name__ == "__main__":
    main()
