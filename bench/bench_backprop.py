"""Is a training step on hand-written gradients as fast as one on autograd's? (nanogpt.backprop)

One step = forward, gradients, SGD update, on a names-shaped batch (27 characters, context 3,
n_embd 10, batch 32), in float32 on the CPU. The gradient sources take turns, round after
round, so that a busy machine slows them alike; each row is the median over rounds, and the
ratio is autograd's time over the row's (above 1: faster than autograd).

    python bench/bench_backprop.py [--quick]
"""

import argparse
import statistics
import time

import torch

from nanogpt.backprop import GRADIENTS, gradients, init_params, sgd_step


def time_steps(params, batches, source: str) -> float:
    """Seconds per training step over the given batches."""
    start = time.perf_counter()
    for X, Y in batches:
        _, grads = gradients(params, X, Y, source)
        sgd_step(params, grads, 0.01)
    return (time.perf_counter() - start) / len(batches)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few steps: a check that it runs")
    ap.add_argument("--rounds", type=int, default=7, help="turns each gradient source takes")
    ap.add_argument("--steps", type=int, default=300, help="steps per turn")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0, help="seed of the weights and batches")
    args = ap.parse_args()
    rounds, steps = (2, 20) if args.quick else (args.rounds, args.steps)
    torch.set_num_threads(args.threads)

    print("| n_hidden | gradients | ms/step | speed vs autograd |")
    print("|---:|---|---:|---:|")
    for n_hidden in (64, 200):
        g = torch.Generator().manual_seed(args.seed)
        batches = [(torch.randint(0, 27, (32, 3), generator=g), torch.randint(0, 27, (32,), generator=g))
                   for _ in range(steps)]
        params = {src: init_params(27, 3, 10, n_hidden, generator=torch.Generator().manual_seed(args.seed))
                  for src in GRADIENTS}
        times = {src: [] for src in GRADIENTS}
        for src in GRADIENTS:  # warm-up, untimed
            time_steps(params[src], batches[:10], src)
        for _ in range(rounds):
            for src in GRADIENTS:
                times[src].append(time_steps(params[src], batches, src))
        median = {src: statistics.median(t) for src, t in times.items()}
        for src in GRADIENTS:
            print(f"| {n_hidden} | {src} | {1e3 * median[src]:.3f} | "
                  f"{median['autograd'] / median[src]:.2f}x |")


if __name__ == "__main__":
    main()
