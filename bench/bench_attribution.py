"""How much faster batched integrated gradients is than one computation per character.

    .venv/bin/python bench/bench_attribution.py            # a few minutes on 2 quiet CPU cores
    .venv/bin/python bench/bench_attribution.py --quick    # under a minute: a smoke check
    .venv/bin/python bench/bench_attribution.py --settings-on runs/gpt-cpu   # completeness vs cost

A randomly initialised GPT of the gpt-cpu preset's shape (speed does not depend on training)
generates the text from a one-character prompt; then every generated character is attributed to
its window with integrated gradients (Gauss-Legendre, 32 steps), by `attribute` (every (alpha,
target) pair a row of a batch, `--batch-size` rows a pass) and by `attribute_loop` (one
character at a time, its alphas in passes of the same size). Then the batched cost for shorter
texts, and on 20 characters the textbook loop, one pass per (character, alpha). All figures come
from this one run; CPU seconds beside wall seconds, since a shared machine blurs the latter.

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


MEAN_MIDDLE = {"rule": "middle", "baseline": "mean"}
SETTINGS = [("(defaults)", {}), ("--steps 64", {"steps": 64}),
            ("--steps 64 --rule middle --baseline mean", {"steps": 64, **MEAN_MIDDLE}),
            ("--steps 128 --rule middle --baseline mean", {"steps": 128, **MEAN_MIDDLE})]


def settings_table(ckpt) -> None:
    """`python -m nanogpt.attribute`'s text (seed 1337, 200 characters) under each setting."""
    from nanogpt.attribution import COMPLETENESS_TOLERANCE, attribute
    from nanogpt.checkpoint import load_model

    model, _, _ = load_model(ckpt)
    generator = torch.Generator().manual_seed(1337)
    prompt = torch.zeros(1, 1, dtype=torch.long)  # id 0: the newline, as the CLI starts
    ids = generate(model, prompt, 200, generator=generator, keep=model.config.block_size)[0]
    print(f"{ckpt}: 200 generated characters\n\n| flags | targets with \\|delta\\| > "
          f"{COMPLETENESS_TOLERANCE:.0%} of \\|dF\\| | wall s | CPU s |\n|---|---|---|---|")
    for flags, options in SETTINGS:
        wall, cpu, result = timed(attribute, model, ids, positions=range(1, len(ids)), **options)
        off = result.incomplete()
        print(f"| {flags} | {off.sum()} of {len(off)} | {wall:.0f} | {cpu:.0f} |", flush=True)


def main(argv=None) -> None:
    """Print the markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short texts and 4 steps")
    ap.add_argument("--steps", type=int, default=32, help="quadrature points (--quick: 4)")
    ap.add_argument("--batch-size", type=int, default=64, help="rows per pass, for both paths")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--settings-on", metavar="CKPT", default=None,
                    help="instead: on this trained checkpoint, how many of 200 generated characters "
                         "miss completeness by more than 5%% under each setting, and what each costs")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.settings_on:
        settings_table(args.settings_on)
        return
    steps = 4 if args.quick else args.steps
    lengths = (8, 16, 32) if args.quick else (50, 100, 200)
    textbook_length = 8 if args.quick else 20
    model = gpt_cpu_shaped()
    prompt = torch.zeros(1, 1, dtype=torch.long)
    text = generate(model, prompt, max(lengths), generator=torch.Generator().manual_seed(0),
                    keep=model.config.block_size)[0]
    chars = lambda n: text[: n + 1]  # noqa: E731  (n generated characters after the prompt)
    options = dict(steps=steps, batch_size=args.batch_size)
    attribute(model, chars(8), steps=2)  # warm up
    print(f"GPT {model.config.n_layer} layers x {model.config.n_embd} wide, block "
          f"{model.config.block_size}, float32; Gauss-Legendre {steps} steps; "
          f"batch {args.batch_size} rows; {torch.get_num_threads()} threads\n")

    n = lengths[-1]
    w_loop, c_loop, slow = timed(attribute_loop, model, chars(n), **options)
    w_fast, c_fast, fast = timed(attribute, model, chars(n), **options)
    diff = np.abs(fast.scores - slow.scores).max()
    print("| characters | per-character loop: s (CPU s) | batched: s (CPU s) | loop / batched, wall "
          "| loop / batched, CPU | max abs difference |\n|---|---|---|---|---|---|")
    print(f"| {n} | {w_loop:.1f} ({c_loop:.1f}) | {w_fast:.1f} ({c_fast:.1f}) | {w_loop / w_fast:.2f}x "
          f"| {c_loop / c_fast:.2f}x | {diff:.1e} |\n", flush=True)

    print("| characters | batched: s (CPU s) | ms per character | CPU cost / shortest's "
          "| sum of window lengths / shortest's |\n|---|---|---|---|---|")
    costs = {n: (w_fast, c_fast)}
    for m in lengths[:-1]:
        costs[m] = timed(attribute, model, chars(m), **options)[:2]
    windows = {m: sum(min(t, model.config.block_size) for t in range(1, m + 1)) for m in lengths}
    for m in lengths:
        w, c = costs[m]
        print(f"| {m} | {w:.1f} ({c:.1f}) | {1e3 * w / m:.0f} | {c / costs[lengths[0]][1]:.1f}x "
              f"| {windows[m] / windows[lengths[0]]:.1f}x |", flush=True)

    # The textbook loop, one pass per (character, alpha), on a short text only: it is slow.
    n = textbook_length
    w_one, c_one, _ = timed(attribute_loop, model, chars(n), steps=steps, batch_size=1)
    w_fast, c_fast, _ = timed(attribute, model, chars(n), **options)
    print(f"\n| characters | one pass per (character, alpha): s (CPU s) | batched: s (CPU s) "
          f"| ratio, wall | ratio, CPU |\n|---|---|---|---|---|\n"
          f"| {n} | {w_one:.1f} ({c_one:.1f}) | {w_fast:.1f} ({c_fast:.1f}) | {w_one / w_fast:.1f}x "
          f"| {c_one / c_fast:.1f}x |")


if __name__ == "__main__":
    main()
