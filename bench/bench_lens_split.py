"""Where the attribution lens's time goes: gradient passes against forward-only passes.

    .venv/bin/python bench/bench_lens_split.py runs/gpt-cpu/best.pt                  # zero baseline
    .venv/bin/python bench/bench_lens_split.py runs/gpt-cpu/best.pt --baseline mean

On the 200 characters `python -m nanogpt.attribution.cli` writes (seed 1337), integrated gradients
to the default tolerance, with the time spent in the batched gradient passes (gradient_sums) and in
the forward-only passes (path_values: F at the ends of the paths and at the pieces' edges), the rows
of each, and the median points per character. Sharing windows between targets could save only part
of the forward-only time; a gradient pass needs each target's own backward.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is no package: scripts share by file
from bench_attribution import cli_text  # noqa: E402

import nanogpt.attribution.integration as integration  # noqa: E402
from nanogpt.attribution.methods import attribute  # noqa: E402


def timed_passes(names):
    """Wrap integration's pass functions to add up their seconds and rows; return the tallies."""
    seconds, rows = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0)
    for name in names:
        fn = getattr(integration, name)

        def wrapper(*args, _fn=fn, _name=name, **kw):
            t = time.perf_counter()
            out = _fn(*args, **kw)
            seconds[_name] += time.perf_counter() - t
            rows[_name] += len(args[3])  # row_target: one row per (target, point)
            return out

        setattr(integration, name, wrapper)
    return seconds, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt", help="a GPT checkpoint, e.g. runs/gpt-cpu/best.pt")
    ap.add_argument("--baseline", default="zero", help="zero | mean (where the paths start)")
    args = ap.parse_args(argv)
    seconds, rows = timed_passes(["gradient_sums", "path_values"])
    model, ids, positions = cli_text(args.ckpt)
    t = time.perf_counter()
    result = attribute(model, ids, positions=positions, baseline=args.baseline)
    total = time.perf_counter() - t
    print(f"{args.ckpt}, baseline {args.baseline}: {len(positions)} characters in {total:.1f} s; "
          f"gradient passes {seconds['gradient_sums']:.1f} s ({rows['gradient_sums']} rows), forward-only "
          f"{seconds['path_values']:.1f} s ({rows['path_values']} rows); median points per character "
          f"{int(torch.as_tensor(result.steps_used).median())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
