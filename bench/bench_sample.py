"""How much the KV cache speeds up sampling, and how the cost per character grows with length.

    .venv/bin/python bench/bench_sample.py            # about 2 minutes on an idle CPU core
    .venv/bin/python bench/bench_sample.py --quick    # a few seconds: a smoke check

Randomly initialised models (speed does not depend on training), batch 1, all figures from this
one run. "Same windows" is the uncached path fed exactly the windows the cached path uses
(`context_window` with keep = block_size // 2); "nanoGPT crop" feeds the last block_size tokens
at every step (keep = block_size).

The speed table is the steady state: the context already full, then one whole window cycle
(block_size // 2 + 1 steps: one prefill of block_size // 2 tokens, then cached steps as the window
grows back to block_size), timed through `NextTokenLogits`, the part of `generate` that runs the model
(drawing a token from 65 logits costs microseconds). The length table times `generate` itself
from a one-token prompt, so it includes every prefill.
"""

from __future__ import annotations

import argparse
import time

import torch

from nanogpt.config import PRESETS
from nanogpt.gpt import GPT, GPTConfig
from nanogpt.sample import NextTokenLogits, generate


def model_of(n_layer: int, n_head: int, n_embd: int, block_size: int) -> GPT:
    """A randomly initialised character-level GPT of this shape, in eval mode."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=65, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd)
    return GPT(cfg).eval()


def chars_per_second(model, new_tokens: int, use_cache: bool) -> float:
    """Characters generated per second by `generate`, from a one-token prompt."""
    g = torch.Generator().manual_seed(0)
    prompt = torch.zeros(1, 1, dtype=torch.long)
    start = time.perf_counter()
    generate(model, prompt, new_tokens, use_cache=use_cache, generator=g)
    return new_tokens / (time.perf_counter() - start)


@torch.no_grad()
def steady_chars_per_second(model, steps: int, use_cache: bool, keep=None) -> float:
    """NextTokenLogits calls per second over `steps` steps that follow a full context."""
    block = model.config.block_size
    seq = torch.randint(65, (1, block + steps), generator=torch.Generator().manual_seed(0))
    next_logits = NextTokenLogits(model, keep=keep, use_cache=use_cache)
    next_logits(seq[:, :block])  # the context is full: not timed
    start = time.perf_counter()
    for t in range(block + 1, block + steps + 1):
        next_logits(seq[:, :t])  # (1, 65) logits for the token after position t - 1
    return steps / (time.perf_counter() - start)


def speed_table(shapes, quick: bool) -> list[str]:
    """chars/s with and without the cache, in the steady state, for each (name, model) shape."""
    rows = ["| model | block | steps | nanoGPT crop, no cache | same windows, no cache | KV cache "
            "| cache / same windows | cache / nanoGPT crop |",
            "|---|---|---|---|---|---|---|---|"]
    for name, model in shapes:
        block = model.config.block_size
        steps = block // 2 + 1  # one window cycle with keep = block_size // 2
        steps = min(steps, 24) if quick else steps
        steady_chars_per_second(model, 4, use_cache=True)  # warm up
        crop = steady_chars_per_second(model, steps, use_cache=False, keep=block)
        same = steady_chars_per_second(model, steps, use_cache=False)
        cached = steady_chars_per_second(model, steps, use_cache=True)
        rows.append(f"| {name} | {block} | {steps} | {crop:.1f} | {same:.1f} | {cached:.1f} "
                    f"| {cached / same:.1f}x | {cached / crop:.1f}x |")
    return rows


def length_table(model, quick: bool) -> list[str]:
    """Milliseconds per character as the generated text grows, from a one-token prompt."""
    lengths = (64, 256) if quick else (64, 256, 1024)
    rows = ["| new tokens | KV cache ms/char | no cache ms/char | no cache / cache |",
            "|---|---|---|---|"]
    for n in lengths:
        cached = 1000 / chars_per_second(model, n, use_cache=True)
        uncached = 1000 / chars_per_second(model, n, use_cache=False)
        rows.append(f"| {n} | {cached:.2f} | {uncached:.1f} | {uncached / cached:.1f}x |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps: a fast check")
    # One thread by default: batch-1 decoding reads every weight per token and gains little from a
    # second thread, while on a machine busy with other work each thread hand-off costs ~10x.
    # A second thread helps the uncached path more, so on an idle machine --threads 2 gives a
    # somewhat smaller cache / no-cache ratio.
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = PRESETS["gpt-cpu"]
    baby = model_of(6, 6, 384, 256)  # nanoGPT's shakespeare_char "baby GPT"
    shapes = [("6x384 baby GPT", baby),
              (f"{cpu.n_layer}x{cpu.n_embd} gpt-cpu",
               model_of(cpu.n_layer, cpu.n_head, cpu.n_embd, cpu.block_size))]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1\n")
    print("\n".join(speed_table(shapes, args.quick)))
    print("\nCost per character as the text grows (6x384, block 256, keep 128):\n")
    print("\n".join(length_table(baby, args.quick)))


if __name__ == "__main__":
    main()
