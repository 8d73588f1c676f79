"""What watching a run costs: training steps with the diagnostics Monitor on, against the same without.

    .venv/bin/python bench/bench_diagnostics.py           # gpt-cpu shape, 200 steps each: minutes
    .venv/bin/python bench/bench_diagnostics.py --quick   # smoke shape, 60 steps each: seconds

Two copies of one randomly initialised GPT of the preset's shape train side by side on the same
random token batches, with AdamW and gradient clipping as the engine does; one of them is watched by
Monitor(every=100). They take turns step by step, so that whatever else runs on the machine slows
both alike. A tracked step (hooks, histograms) costs more than an untracked one (only
the update ratios), and a short run holds a larger share of tracked steps (EARLY_STEPS) than a long
one, so the table also projects the overhead over the preset's max_iters from the median cost of
each kind of step.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from nanogpt.config import PRESETS
from nanogpt.diagnostics import Monitor
from nanogpt.gpt import GPT, GPTConfig

EVERY = 100  # the engine's default --diag-every


def make_step(model, monitor=None):
    """One engine-like training step (forward, backward, clip, AdamW) as a function of (step, x, y)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(it, x, y):
        if monitor:
            monitor.start_step(it)
        _, loss = model(x, y)
        loss.backward()
        if monitor:
            monitor.after_backward(it)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if monitor:
            monitor.before_update(it)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if monitor:
            monitor.after_update(it, loss=loss.item(), lr=1e-3, grad_norm=norm.item(),
                                 clipped=norm.item() > 1.0)
        else:
            loss.item(), norm.item()  # the engine reads both every step when watching; same work here
    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke preset shape, 60 steps")
    parser.add_argument("--steps", type=int, default=None, help="steps per model [200; quick: 60]")
    args = parser.parse_args(argv)
    name = "smoke" if args.quick else "gpt-cpu"
    steps = args.steps or (60 if args.quick else 200)
    p = PRESETS[name]
    torch.manual_seed(0)
    plain = GPT(GPTConfig(vocab_size=65, block_size=p.block_size, n_layer=p.n_layer, n_head=p.n_head,
                          n_embd=p.n_embd, bias=p.bias))
    watched = copy.deepcopy(plain)
    monitor = Monitor(watched, every=EVERY, log=lambda _: None)
    runs = {"plain": make_step(plain), "watched": make_step(watched, monitor)}
    g = torch.Generator().manual_seed(0)
    times = {"plain": [], "watched": []}
    for it in range(steps):
        x, y = (torch.randint(65, (p.batch_size, p.block_size), generator=g) for _ in range(2))
        for kind, step in runs.items():
            t0 = time.perf_counter()
            step(it, x, y)
            times[kind].append(time.perf_counter() - t0)

    skip = 2  # the first steps warm up allocators and caches
    base = sum(times["plain"][skip:]) / (steps - skip)
    run = sum(times["watched"][skip:]) / (steps - skip)
    tracked = [t for it, t in enumerate(times["watched"]) if it >= skip and monitor.is_tracked(it)]
    untracked = [t for it, t in enumerate(times["watched"]) if it >= skip and not monitor.is_tracked(it)]
    base_median = statistics.median(times["plain"][skip:])
    n_tracked = sum(monitor.is_tracked(it) for it in range(p.max_iters))
    projected = ((n_tracked * statistics.median(tracked) + (p.max_iters - n_tracked)
                  * statistics.median(untracked)) / (p.max_iters * base_median))
    threads = torch.get_num_threads()
    print(f"{name} shape: {p.n_layer} layers, n_embd {p.n_embd}, block {p.block_size}, batch "
          f"{p.batch_size}; {steps} steps each, {threads} threads; Monitor(every={EVERY})\n")
    print("| measure | ms/step | watched / plain |")
    print("|---|---|---|")
    print(f"| plain, mean over steps {skip}..{steps - 1} | {base * 1e3:.1f} | 1.000 |")
    print(f"| watched, mean over the same steps ({len(tracked)} tracked) | {run * 1e3:.1f} "
          f"| {run / base:.3f} |")
    print(f"| plain, median step | {base_median * 1e3:.1f} | 1.000 |")
    print(f"| watched, median untracked step | {statistics.median(untracked) * 1e3:.1f} "
          f"| {statistics.median(untracked) / base_median:.3f} |")
    print(f"| watched, median tracked step | {statistics.median(tracked) * 1e3:.1f} "
          f"| {statistics.median(tracked) / base_median:.3f} |")
    print(f"| projected over the preset's {p.max_iters} steps ({n_tracked} tracked) | - | {projected:.3f} |")


if __name__ == "__main__":
    main()
