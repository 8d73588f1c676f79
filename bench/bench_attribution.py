"""How much faster batched integrated gradients is than one computation per character.

    .venv/bin/python bench/bench_attribution.py            # a few minutes on 2 quiet CPU cores
    .venv/bin/python bench/bench_attribution.py --quick    # under a minute: a smoke check
    .venv/bin/python bench/bench_attribution.py --settings-on runs/gpt-cpu   # completeness vs cost
    .venv/bin/python bench/bench_attribution.py --captum-on runs/gpt-cpu     # to a tolerance vs Captum
    .venv/bin/python bench/bench_attribution.py --tune-on runs/gpt-cpu       # points per piece, measured

A randomly initialised GPT of the gpt-cpu preset's shape (speed does not depend on training)
generates the text from a one-character prompt; then every generated character is attributed to
its window with integrated gradients (Gauss-Legendre, 32 steps), by `attribute` (every (alpha,
target) pair a row of a batch, `--batch-size` rows a pass) and by `attribute_loop` (one
character at a time, its alphas in passes of the same size). Then the batched cost for shorter
texts, and on 20 characters the textbook loop, one pass per (character, alpha). All figures come
from this one run; CPU seconds beside wall seconds, since a shared machine blurs the latter.

--captum-on: on the 200 characters `python -m nanogpt.attribution.cli` writes, the time to bring every
target within the default tolerance (|delta| <= max(5% |dF|, 1e-3)): the lens integrating to
it, against Captum's IntegratedGradients called once per target on its window (as Inseq does),
at its defaults (n_steps=50, Gauss-Legendre, with the targets that then miss) and at the fewest
n_steps of CAPTUM_LADDER (8 up to 1024, 50 among them) at which Captum's own convergence deltas
put every target within; Captum is timed at that n_steps on all targets.

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

from nanogpt.attribution.methods import attribute, attribute_loop
from nanogpt.config import PRESETS
from nanogpt.gpt import GPT, GPTConfig
from nanogpt.sample import generate


def gpt_cpu_shaped() -> GPT:
    """A randomly initialised GPT with the gpt-cpu preset's shape, in eval mode."""
    p = PRESETS["gpt-cpu"]
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=65, block_size=p.block_size, n_layer=p.n_layer, n_head=p.n_head,
                    n_embd=p.n_embd, bias=p.bias, position=p.position)
    return GPT(cfg).eval()


def timed(fn, *args, **kw):
    """(wall seconds, CPU seconds, result) of one call. CPU time counts only this process's work,
    so on a shared machine it is the steadier figure (with one thread it is the work itself)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return time.perf_counter() - wall, time.process_time() - cpu, out


MEAN_MIDDLE = {"rule": "middle", "baseline": "mean"}
SETTINGS = [("(defaults: to --tol 0.05)", {}), ("--steps 32", {"steps": 32}), ("--steps 64", {"steps": 64}),
            ("--steps 64 --rule middle --baseline mean", {"steps": 64, **MEAN_MIDDLE}),
            ("--steps 128 --rule middle --baseline mean", {"steps": 128, **MEAN_MIDDLE})]


def settings_table(ckpt) -> None:
    """`python -m nanogpt.attribution.cli`'s text (seed 1337, 200 characters) under each setting."""
    from nanogpt.attribution.paths import COMPLETENESS_TOLERANCE

    model, ids, positions = cli_text(ckpt)
    print(f"{ckpt}: {len(positions)} generated characters\n\n| flags | targets with \\|delta\\| > "
          f"{COMPLETENESS_TOLERANCE:.0%} of \\|dF\\| | wall s | CPU s |\n|---|---|---|---|")
    for flags, options in SETTINGS:
        wall, cpu, result = timed(attribute, model, ids, positions=positions, **options)
        off = result.incomplete(COMPLETENESS_TOLERANCE)
        print(f"| {flags} | {off.sum()} of {len(off)} | {wall:.0f} | {cpu:.0f} |", flush=True)


def cli_text(ckpt):
    """The model (float32, CPU) and the ids `python -m nanogpt.attribution.cli --ckpt CKPT` attributes."""
    from nanogpt.attribution.cli import build_parser, text_ids
    from nanogpt.checkpoint import load_model

    model, tokenizer, _ = load_model(ckpt, "cpu")
    ids, first = text_ids(model, tokenizer, build_parser().parse_args(["--ckpt", str(ckpt)]))
    return model, torch.tensor(ids), list(range(first, len(ids)))


# Captum's n_steps tried, from well below its default of 50: the fewest that bring every target
# within the tolerance, by Captum's own convergence deltas, is the one Captum is timed at.
CAPTUM_LADDER = (8, 16, 24, 32, 50, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


def captum_deltas(model, ids, positions, n_steps, baseline="zero") -> list[float]:
    """Captum's IntegratedGradients once per target, on its window (as Inseq does): its
    convergence delta for each target. baseline: "zero" or "mean" (of the embedding table)."""
    import torch.nn.functional as F
    from captum.attr import IntegratedGradients

    block, deltas = model.config.block_size, []
    for t in positions:
        start = max(0, t - block)
        with torch.no_grad():
            x = model.wte(ids[start:t])[None]  # (1, L, C)
            base = torch.zeros_like(x) if baseline == "zero" else model.wte.weight.mean(0).expand_as(x)
            pos = torch.zeros_like(x[0]) if model.wpe is None else model.wpe(torch.arange(t - start))

        def forward(emb, pos=pos, t=t):  # (B, L, C) -> (B,) log p(ids[t])
            return F.log_softmax(model(tok_emb=emb, pos_emb=pos)[0][:, -1], dim=-1)[:, ids[t]]

        _, delta = IntegratedGradients(forward).attribute(
            x, baselines=base, n_steps=n_steps, method="gausslegendre",
            internal_batch_size=min(n_steps, 128), return_convergence_delta=True)  # bounds memory
        deltas.append(delta.item())
    return deltas


def fewest_captum_steps(positions, budget: dict, deltas_at, ladder=CAPTUM_LADDER) -> int | None:
    """The smallest n_steps of the ladder at which Captum's own deltas put every target within its
    budget (budget[t]: the largest |delta| accepted). deltas_at(n, targets) -> Captum's deltas.
    Each rung is tried on the targets that missed below it; a rung that clears them is then
    confirmed on every target (a target within at a lower n can miss at a higher one)."""
    missing = list(positions)
    for n in ladder:
        missing = [t for t, d in zip(missing, deltas_at(n, missing), strict=True) if abs(d) > budget[t]]
        if missing:
            continue
        missing = [t for t, d in zip(positions, deltas_at(n, positions), strict=True) if abs(d) > budget[t]]
        if not missing:
            return n
    return None


def captum_timed(model, ids, positions, n_steps, budget: dict, baseline="zero"):
    """Captum per target at n_steps, timed: (wall s, CPU s, targets missing their budget)."""
    wall, cpu, deltas = timed(captum_deltas, model, ids, positions, n_steps, baseline)
    return wall, cpu, sum(abs(d) > budget[t] for t, d in zip(positions, deltas, strict=True))


def captum_table(ckpt, baseline="zero") -> None:
    """The lens to a tolerance, the fixed 32-point rule, and Captum per target, on the CLI's text."""
    model, ids, positions = cli_text(ckpt)
    attribute(model, ids[:10], steps=2)  # warm up
    print(f"{ckpt}: {len(positions)} generated characters; tolerance |delta| <= max(5% |dF|, 1e-3); "
          f"baseline {baseline}\n")
    w_ad, c_ad, adaptive = timed(attribute, model, ids, positions=positions, baseline=baseline)
    budget = dict(zip(positions, adaptive.tolerances(), strict=True))
    rows = [("lens, to the tolerance (defaults)", int(adaptive.steps_used.sum()), w_ad, c_ad,
             int(adaptive.incomplete().sum()), f"{int(adaptive.capped.sum())} capped")]
    w_32, c_32, fixed = timed(attribute, model, ids, positions=positions, steps=32, baseline=baseline)
    rows.append(("lens, fixed 32-point Gauss-Legendre", 32 * len(positions), w_32, c_32,
                 int(sum(abs(d) > budget[t] for t, d in zip(positions, fixed.delta, strict=True))), ""))
    w50, c50, miss50 = captum_timed(model, ids, positions, 50, budget, baseline)
    rows.append(("Captum IG per target, n_steps=50 (its default)", 50 * len(positions), w50, c50, miss50, ""))
    n = fewest_captum_steps(positions, budget, lambda n, ts: captum_deltas(model, ids, ts, n, baseline))
    if n is None:
        print(f"Captum misses the tolerance at every n_steps up to {CAPTUM_LADDER[-1]}")
    else:
        wn, cn, missn = (w50, c50, miss50) if n == 50 else captum_timed(model, ids, positions, n, budget,
                                                                                         baseline)
        rows.append((f"Captum IG per target, n_steps={n} (the fewest that reach it)", n * len(positions),
                     wn, cn, missn, ""))
    print("| integration | points on the paths | wall s | CPU s | targets missing the tolerance | "
          "wall / lens's |\n|---|---|---|---|---|---|")
    for name, points, wall, cpu, miss, note in rows:
        print(f"| {name} | {points} | {wall:.1f} | {cpu:.1f} | {miss}{f' ({note})' if note else ''} | "
              f"{wall / w_ad:.2f}x |")
    if n is not None:
        print(f"\nCaptum at equal completeness (n_steps={n}, the fewest on {CAPTUM_LADDER}) / the lens to "
              f"the tolerance: {wn / w_ad:.1f}x wall, {cn / c_ad:.1f}x CPU; points per target (lens): median "
              f"{np.median(adaptive.steps_used):g}, max {adaptive.steps_used.max()}")


# (tol, first pieces, points per piece): the lens's default (0.05, 4, 4) among its neighbours.
TUNE_ROWS = ((0.05, 1, 3), (0.05, 1, 4), (0.05, 1, 6), (0.05, 1, 8), (0.05, 2, 3), (0.05, 2, 4),
             (0.05, 3, 4), (0.05, 4, 3), (0.05, 4, 4), (0.05, 4, 8), (0.01, 4, 4))


def tune_table(ckpt, baseline="zero") -> None:
    """First pieces, points per piece, tolerance: the lens's cost to a tolerance on the CLI's text."""
    model, ids, positions = cli_text(ckpt)
    attribute(model, ids[:10], steps=2)  # warm up
    print(f"{ckpt}: {len(positions)} generated characters; baseline {baseline}\n\n| tol | first pieces "
          "| points per piece | total points | median, max per target | capped | wall s | CPU s |\n"
          + "|---" * 8 + "|")
    for tol, pieces, steps in TUNE_ROWS:
        wall, cpu, r = timed(attribute, model, ids, positions=positions, tol=tol, steps=steps, pieces=pieces,
                             baseline=baseline)
        print(f"| {tol} | {pieces} | {steps} | {r.steps_used.sum()} | {np.median(r.steps_used):g}, "
              f"{r.steps_used.max()} | {r.capped.sum()} | {wall:.1f} | {cpu:.1f} |", flush=True)


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
    ap.add_argument("--captum-on", metavar="CKPT", default=None,
                    help="instead: on this checkpoint's CLI text, the time to bring every target within "
                         "the default tolerance, the lens against Captum per target")
    ap.add_argument("--tune-on", metavar="CKPT", default=None,
                    help="instead: the lens's cost to a tolerance for several points per piece")
    ap.add_argument("--baseline", choices=("zero", "mean"), default="zero",
                    help="with --captum-on or --tune-on: where the paths start (mean: for a rotary model, "
                         "whose path from zero only rescales the input)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.captum_on:
        captum_table(args.captum_on, args.baseline)
        return
    if args.tune_on:
        tune_table(args.tune_on, args.baseline)
        return
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
