"""What watching a run costs: training steps with the diagnostics Monitor on, against the same without.

    .venv/bin/python bench/bench_diagnostics.py           # gpt-cpu shape, 200 steps each: minutes
    .venv/bin/python bench/bench_diagnostics.py --quick   # smoke shape, 60 steps each: seconds

Two copies of one randomly initialised GPT of the preset's shape train on the same random token
batches, with AdamW and gradient clipping as the engine does; one of them is watched by
Monitor(every=100). They take turns step by step, so that whatever else runs on the machine slows
both alike. First a run of --steps steps each (its EARLY_STEPS make a short run's share of tracked
steps larger than a long run's). Then ROUNDS rounds of three steps side by side: plain, watched
untracked (only the update ratios), watched tracked (hooks and histograms); the medians of the
paired ratios give each kind of step's cost, and from them the overhead over the preset's max_iters.
Wall time is the goal's measure; CPU time (of this process) is also shown because it shrugs off
other programs competing for the cores.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from nanogpt.config import PRESETS
from nanogpt.diagnostics.monitor import Monitor
from nanogpt.gpt import GPT, GPTConfig

EVERY = 100  # the engine's default --diag-every
ROUNDS = 15  # paired rounds per kind of step


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

    def batch():
        return [torch.randint(65, (p.batch_size, p.block_size), generator=g) for _ in range(2)]

    def timed(step, it, x, y) -> np.ndarray:
        """(wall, CPU) seconds of one step: CPU time is what the step itself used, whoever else runs."""
        t0 = np.array([time.perf_counter(), time.process_time()])
        step(it, x, y)
        return np.array([time.perf_counter(), time.process_time()]) - t0

    skip = 2  # the first steps warm up allocators and caches
    run = {"plain": np.zeros(2), "watched": np.zeros(2)}
    for it in range(steps):
        x, y = batch()
        for kind, step in runs.items():
            if it >= skip:
                run[kind] += timed(step, it, x, y)
            else:
                step(it, x, y)
    n_early = sum(monitor.is_tracked(it) for it in range(skip, steps))

    untracked, tracked = [], []  # paired ratios: watched / plain in the same round
    rounds = 3 if args.quick else ROUNDS
    for r in range(rounds):
        x, y = batch()
        base = timed(runs["plain"], steps + r, x, y)
        untracked.append(timed(runs["watched"], EVERY * (r + 1) + 1, x, y) / base)
        tracked.append(timed(runs["watched"], EVERY * (r + 1), x, y) / base)
    cost_u, cost_t = np.median(untracked, axis=0), np.median(tracked, axis=0)
    n_tracked = sum(monitor.is_tracked(it) for it in range(p.max_iters))
    projected = (n_tracked * cost_t + (p.max_iters - n_tracked) * cost_u) / p.max_iters

    def cells(ratio):
        return f"{ratio[0]:.3f} | {ratio[1]:.3f}"

    ms = run["plain"] / (steps - skip) * 1e3
    print(f"{name} shape: {p.n_layer} layers, n_embd {p.n_embd}, block {p.block_size}, batch "
          f"{p.batch_size}; {torch.get_num_threads()} threads; Monitor(every={EVERY}); plain step "
          f"{ms[0]:.0f} ms wall, {ms[1]:.0f} ms CPU\n")
    print("| measure | watched / plain, wall time | watched / plain, CPU time |")
    print("|---|---|---|")
    print(f"| a run of steps {skip}..{steps - 1} ({n_early} tracked), total | "
          f"{cells(run['watched'] / run['plain'])} |")
    print(f"| untracked step, median of {rounds} paired rounds | {cells(cost_u)} |")
    print(f"| tracked step, median of {rounds} paired rounds | {cells(cost_t)} |")
    print(f"| projected over the preset's {p.max_iters} steps ({n_tracked} tracked) | {cells(projected)} |")

if __name__ == "__main__":
    main()
