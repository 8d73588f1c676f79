"""The GPU path in one command: training speed (float32, bfloat16 autocast, compiled), gpt-gpu
trained (as the preset is, and with each of gpt-cpu's changes alone), sampling with and without the KV
cache, and attribution, as one markdown table.

    .venv/bin/python bench/gpu_check.py                     # three gpt-gpu runs (not yet timed on a GPU)
    .venv/bin/python bench/gpu_check.py --compile           # the gpt-gpu run compiled too
    .venv/bin/python bench/gpu_check.py --device cpu --quick   # a smoke check on the CPU, seconds

Speed rows: the loop's real steps (nanogpt.train), timed from the run's log after a warm-up
(bench_train.time_steps), in float32, with bfloat16 autocast, and with bfloat16 and
torch.compile (the compilation itself is not timed). The training row runs the gpt-gpu preset
as `make train` does on a GPU (dtype auto: bfloat16 autocast) and reports the final val loss on
the whole split and the run's wall time. The sampling rows generate from that model
(nanogpt.sample.generate, batch 1, use_cache on and off); the attribution row times
nanogpt.attribution.methods.attribute (integrated gradients, its defaults) on about 100 of the generated
characters. Without CUDA it says so in one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from contextlib import redirect_stdout
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is no package: scripts share by file
from bench_train import time_steps  # noqa: E402

from nanogpt.attribution.methods import attribute  # noqa: E402
from nanogpt.checkpoint import load_model  # noqa: E402
from nanogpt.config import preset  # noqa: E402
from nanogpt.sample import generate  # noqa: E402
from nanogpt.train import train  # noqa: E402

# (preset, speed steps, sampled characters, attributed characters, training overrides)
FULL = ("gpt-gpu", 100, 500, 100, {})
QUICK = ("smoke", 10, 60, 20, {"max_iters": 20, "eval_interval": 10})
# gpt-cpu's changes to nanoGPT's recipe, each tried alone on gpt-gpu: (row label, overrides)
GPU_CANDIDATES = [("rotary positions", {"position": "rotary"}), ("cosine down to 0", {"min_lr": 0.0})]


def synced(fn, device: str):
    """(seconds, result) of fn(), the GPU's queue included."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t = time.perf_counter()
    result = fn()
    sync()
    return time.perf_counter() - t, result


def speed_rows(name: str, steps: int, device: str, quick: bool) -> list[tuple]:
    """ms/step and tokens/s in float32, bfloat16 autocast, and bfloat16 + compile."""
    settings = [("float32", {"dtype": "float32"}), ("bfloat16 autocast", {"dtype": "bfloat16"}),
                ("bfloat16 autocast + compile", {"dtype": "bfloat16", "compile": "on"})]
    rows, base = [], None
    for label, overrides in settings:
        if quick and "compile" in overrides:  # compiling takes half a minute even for a tiny model
            rows.append(("train speed", f"{name}, {label}", "skipped (--quick)", ""))
            continue
        t, r = synced(lambda o=overrides: time_steps(name, steps, device=device, **o), device)
        base = base or r["tok_s"]
        rows.append(("train speed", f"{name}, {label}", f"{r['step_ms']:.1f} ms/step, "
                     f"{r['tok_s']:,.0f} tokens/s ({r['tok_s'] / base:.2f}x float32)", f"{t:.0f}"))
    return rows


def check(device: str, quick: bool, compile_train: bool, out_dir: str) -> list[tuple]:
    """Every row of the table, in the order they run."""
    name, steps, n_sample, n_attr, overrides = QUICK if quick else FULL
    rows = speed_rows(name, steps, device, quick)
    cfg = preset(name, device=device, out_dir=out_dir, compile="on" if compile_train else "off",
                 **overrides)
    with redirect_stdout(io.StringIO()):
        r = train(cfg, progress=False)
    rows.append(("train", f"{name} ({cfg.max_iters} steps, dtype {cfg.dtype}, compile {cfg.compile})",
                 f"val {r['val_loss']:.4f} (whole split)", f"{r['seconds']:.0f}"))
    # gpt-cpu's changes, each alone on the GPU preset: unmeasured on a GPU so far, so the preset
    # keeps nanoGPT's settings until these rows show whether a change pays there too.
    for label, change in GPU_CANDIDATES:
        with redirect_stdout(io.StringIO()):
            c = train(replace(cfg, **change, out_dir=str(Path(out_dir) / label.split()[0])), progress=False)
        rows.append(("train", f"{name} + {label} (as gpt-cpu), same steps",
                     f"val {c['val_loss']:.4f} (whole split; {c['val_loss'] - r['val_loss']:+.4f})",
                     f"{c['seconds']:.0f}"))

    model, _, _ = load_model(Path(out_dir) / "best.pt", device=device)
    prompt = torch.zeros(1, 1, dtype=torch.long, device=device)  # id 0: the newline
    speeds = {}
    for use_cache in (True, False):
        gen = torch.Generator(device=device).manual_seed(0)
        t, ids = synced(lambda u=use_cache, g=gen: generate(model, prompt, n_sample, use_cache=u,
                                                             generator=g), device)
        speeds[use_cache] = n_sample / t
        rows.append(("sample", f"{n_sample} characters, batch 1, KV cache {'on' if use_cache else 'off'}",
                     f"{n_sample / t:,.0f} chars/s" + (f" ({speeds[True] / speeds[False]:.1f}x with the "
                                                        "cache)" if not use_cache else ""), f"{t:.1f}"))
    text = ids[0, : n_attr + 1]  # the prompt and n_attr generated characters
    t, result = synced(lambda: attribute(model, text), device)
    rows.append(("attribution", f"integrated gradients (defaults), {n_attr} generated characters",
                 f"{1e3 * t / n_attr:.0f} ms/character; {result.incomplete().sum()} of {n_attr} miss "
                 "completeness", f"{t:.1f}"))
    return rows


def main(argv=None) -> int:
    """Print the table; 2 when there is no GPU to check."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (with --quick: a smoke check)")
    ap.add_argument("--quick", action="store_true", help="the smoke preset, a few steps: seconds")
    ap.add_argument("--compile", action="store_true", help="train the gpt-gpu row compiled too")
    ap.add_argument("--out-dir", default=None, help="keep the trained run here (default: a temporary folder)")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA GPU here; this checks the GPU path (--device cpu --quick: a smoke run)",
              file=sys.stderr)
        return 2
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        rows = check(args.device, args.quick, args.compile, args.out_dir or tmp)
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"{where}, torch {torch.__version__}; {time.time() - t0:.0f} s in all\n")
    print("| check | setting | result | s |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
