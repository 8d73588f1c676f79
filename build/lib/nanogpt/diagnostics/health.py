"""The diagnostics lens, verdicts: health checks on a step's numbers and a run's, and the report.

Each check compares a measured number with a threshold below, and when it fails says in one line
what to do about it. `check_snapshot` needs one step (a Snapshot); `check_training` needs the run
(a History); `health_report` prints both, with the last snapshot's numbers above them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nanogpt.diagnostics.record import History
from nanogpt.diagnostics.stats import Snapshot

# ----------------------------------------------------------------------------- health thresholds

MAX_SATURATION = 0.10  # fraction of a layer's tanh outputs that are saturated
MAX_DEAD = 0.10  # fraction of a layer's units that are dead
STD_RATIO_RANGE = (0.1, 10.0)  # activation std, last layer of a kind / first layer of that kind
MAX_GRAD_DATA_VS_MEDIAN = 10.0  # one weight's grad:data ratio / the median over all weights
UPDATE_GUIDE = -3.0  # log10 update:data near -3: makemore's rule of thumb for a good learning rate
UPDATE_RANGE = (-4.0, -2.0)  # below: learning rate likely too low; above: likely too high
UPDATE_WINDOW = 100  # the update check looks at this many last steps
MAX_CLIP_FRACTION = 0.5  # clipping on more than half the steps: clip threshold or lr is off

CHECKS = {  # what the health report checks, in its order
    "nan": "no NaN or inf in loss, gradient norm, activations or gradients",
    "saturation": f"tanh saturation <= {MAX_SATURATION:.0%} in every layer",
    "dead": f"dead units <= {MAX_DEAD:.0%} in every layer",
    "depth": f"activation std, last / first layer of each kind, within "
             f"{STD_RATIO_RANGE[0]:g}..{STD_RATIO_RANGE[1]:g}",
    "grad_data": f"no weight's grad:data above {MAX_GRAD_DATA_VS_MEDIAN:g} x the median",
    "update": f"median log10 update:data over the last {UPDATE_WINDOW} steps within "
              f"[{UPDATE_RANGE[0]:g}, {UPDATE_RANGE[1]:g}]",
    "clipping": f"gradient clipped on at most {MAX_CLIP_FRACTION:.0%} of steps",
}


@dataclass(frozen=True)
class Problem:
    """One failed health check: which check, where, and what to do about it, in one line."""

    check: str  # a key of CHECKS
    where: str
    message: str


# ----------------------------------------------------------------------------- one step


def check_snapshot(snap: Snapshot) -> list[Problem]:
    """The checks one step's activations and gradients can answer."""
    problems = []
    layers = list(snap.layers.values())
    for s in layers:
        values = [s.mean, s.std] + ([s.grad_std] if s.grad_std is not None else [])
        if not all(math.isfinite(v) for v in values):
            problems.append(Problem("nan", s.name, f"{s.name}: NaN or inf in its output or gradient"))
        if s.saturation is not None and s.saturation > MAX_SATURATION:
            problems.append(Problem("saturation", s.name, f"{s.name}: {s.saturation:.0%} of tanh outputs "
                                    "saturated: scale its input down (Kaiming init, BatchNorm)"))
        if s.dead is not None and s.dead > MAX_DEAD:
            problems.append(Problem("dead", s.name, f"{s.name}: {s.dead:.0%} of units dead on the whole "
                                    "batch: they no longer learn (init too large, lr too high)"))
    for kind in dict.fromkeys(s.kind for s in layers):
        same = [s for s in layers if s.kind == kind]
        if len(same) >= 2 and same[0].std > 0:
            ratio = same[-1].std / same[0].std
            if not STD_RATIO_RANGE[0] <= ratio <= STD_RATIO_RANGE[1]:
                trend = "collapses" if ratio < 1 else "explodes"
                problems.append(Problem("depth", kind, f"{kind} activation std {trend} with depth: "
                                        f"{same[0].std:.3g} in {same[0].name}, {same[-1].std:.3g} in "
                                        f"{same[-1].name} (x{ratio:.3g})"))
    ratios = {w.name: w.grad_data for w in snap.weights.values()}
    for name in ratios:
        if not math.isfinite(snap.weights[name].grad_std):
            problems.append(Problem("nan", name, f"{name}: NaN or inf in its gradient"))
    finite = [r for r in ratios.values() if math.isfinite(r)]
    median = float(np.median(finite)) if finite else 0.0
    for name, r in ratios.items():
        if median > 0 and math.isfinite(r) and r > MAX_GRAD_DATA_VS_MEDIAN * median:
            problems.append(Problem("grad_data", name, f"{name}: grad:data {r:.2e} is {r / median:.0f} x "
                                    f"the median {median:.2e}: this layer trains much faster than the rest "
                                    "(at init, a layer scaled down on purpose, such as the output layer, "
                                    "does so until it grows)"))
    return problems


# ----------------------------------------------------------------------------- the run


def recent_median(values: np.ndarray) -> float:
    """Median over the last UPDATE_WINDOW steps (rows), finite values only; nan when none is left."""
    window = values[-UPDATE_WINDOW:]
    # nan: a weight that took no step (or a step not measured); -inf: the same, in files saved
    # before update_ratios wrote nan for it. Neither says anything about the learning rate.
    window = window[np.isfinite(window)]
    return float(np.median(window)) if window.size else math.nan


def median_update(history: History) -> float:
    """Median log10 update:data over the last UPDATE_WINDOW steps and all weights that moved (nan: none)."""
    return recent_median(history.updates())


def check_training(history: History) -> list[Problem]:
    """The checks the per-step numbers answer: NaN, update:data, clipping."""
    problems = []
    # A gradient norm of nan means "not measured" (the engine measures it only when it needs it).
    for what, values in (("loss", history.loss), ("gradient norm", history.grad_norm)):
        bad = [s for s, v in zip(history.steps, values, strict=True)
               if math.isinf(v) or (what == "loss" and math.isnan(v))]
        if bad:
            problems.append(Problem("nan", what, f"{what} is NaN or inf from step {bad[0]}"))
    m = median_update(history)  # nan (nothing moved, or no step yet) fails neither comparison
    if m < UPDATE_RANGE[0]:
        problems.append(Problem("update", "all", f"median log10 update:data {m:.2f} < {UPDATE_RANGE[0]:g}: "
                                "learning rate likely too low"))
    elif m > UPDATE_RANGE[1]:
        problems.append(Problem("update", "all", f"median log10 update:data {m:.2f} > {UPDATE_RANGE[1]:g}: "
                                "learning rate likely too high"))
    if history.clipped:
        frac = float(np.mean(history.clipped))
        if frac > MAX_CLIP_FRACTION:
            problems.append(Problem("clipping", "all", f"gradient clipped on {frac:.0%} of steps: raise "
                                    "grad_clip or lower the learning rate"))
    return problems


def check(history: History) -> list[Problem]:
    """Every health check, on the last snapshot and on the whole run."""
    last = check_snapshot(history.snapshots[-1]) if history.snapshots else []
    return last + check_training(history)


def health_report(history: History) -> str:
    """The end-of-training report: the last snapshot's numbers, then OK or WARN for each check."""
    problems = check(history)
    lines = ["diagnostics: health report"]
    if history.steps:
        n = len(history.steps)
        norms = np.array(history.grad_norm, dtype=float)
        norm = f"{np.nanmedian(norms):.3g}" if np.isfinite(norms).any() else "-"
        lines.append(f"  {n} steps ({history.steps[0]}..{history.steps[-1]}), "
                     f"{len(history.snapshots)} tracked; "
                     f"loss {history.loss[0]:.4f} -> {history.loss[-1]:.4f}; "
                     f"lr {history.lr[-1]:.2e} at the end; median grad norm {norm}; "
                     f"clipped on {np.mean(history.clipped):.0%} of steps; "
                     f"median log10 update:data (last {UPDATE_WINDOW}) {median_update(history):.2f}")
    if history.snapshots:
        lines += ["  " + line for line in history.snapshots[-1].table().splitlines()]
    for key, description in CHECKS.items():
        found = [p for p in problems if p.check == key]
        lines.append(f"  {'WARN' if found else 'OK  '} {description}")
        lines += [f"         {p.message}" for p in found]
    return "\n".join(lines)
