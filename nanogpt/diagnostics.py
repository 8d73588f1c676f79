"""A lens on training: activations, their gradients, weight gradients and updates, layer by layer.

Makemore part 3 looks inside a network while it trains; this module does the same for every stage:

  forward    each nonlinearity's output (Tanh, GELU, ReLU) and, in the GPT, each attention and MLP
             sub-block's output: histogram, mean, std, tanh saturation, dead units
  backward   the gradient of the loss with respect to each of those outputs: histogram, mean, std
  weights    each weight matrix's gradient: histogram, std, and grad:data = grad.std() / data.std()
  updates    log10(std(change the optimizer step made) / std(weight)), every step
  globally   loss, gradient norm before clipping, clip events, learning rate

Two ways in. The engine (`python -m nanogpt.train --diag`) drives a `Monitor` through five hooks
and calls `finish(out_dir)`, which writes diagnostics.npz, PNGs and health.txt. A notebook calls
`snapshot(model, x, y)` and draws it with the `plot_*` functions of `diagnostics_plots`, which
print the numbers they draw.

Staying cheap: hooks exist only on tracked steps (EARLY_STEPS and every `every`-th step), and a
histogram is a fixed set of counts, not a copy of the tensor. Only the update ratios are taken on
every step, since the "last 100 steps" check needs them: one copy of the weights and two std's each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from nanogpt import gpt
from nanogpt.errors import UserError

# ----------------------------------------------------------------------------- what is measured

EARLY_STEPS = (0, 1, 2, 5, 10, 20, 50)  # always tracked: the first steps change the most
HIST_BINS = 60  # equal bins over [-span, span]; one more bin on each side catches everything beyond
HIST_SPAN = 4.0  # span = 4 x the tensor's rms
TANH_SPAN = 1.0 + 1e-6  # tanh outputs: [-1, 1], a hair wider so that exact +-1 (saturated) stays inside
SATURATED = 0.97  # |tanh| above this lets through under 1 - 0.97^2 = 6% of the gradient
GELU_DEAD_INPUT = -3.0  # below this input a GELU's slope is under 0.013 in size
# A unit (one feature: the last dimension) is dead when no row of the batch passes gradient through it:
#   ReLU: output <= 0 on every row;  GELU: input < GELU_DEAD_INPUT on every row;
#   tanh: |output| > SATURATED on every row (makemore's all-white column).

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
NAME_WIDTH = 26  # printed tables line up for names up to blocks.0.attn.proj.weight


def tracked_kinds() -> list[tuple[type, str]]:
    """The module types whose output is watched, each with the kind it is reported as."""
    from nanogpt import mlp  # imported here: the lens sees every stage, no stage sees the lens

    return [(mlp.Tanh, "tanh"), (nn.Tanh, "tanh"), (nn.GELU, "gelu"), (nn.ReLU, "relu"),
            (gpt.CausalSelfAttention, "attention"), (gpt.MLP, "mlp")]


def tracked_layers(model: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """(name, kind, module) for each watched module, in the order the model registers them."""
    kinds = tracked_kinds()
    found = []
    for name, module in model.named_modules():
        kind = next((k for cls, k in kinds if isinstance(module, cls)), None)
        if kind:
            found.append((name or type(module).__name__, kind, module))
    return found


def _wide(t: torch.Tensor) -> torch.Tensor:
    """At least float32 (bfloat16 sums are too coarse for a std); float64 stays float64."""
    return t.detach().to(torch.promote_types(t.dtype, torch.float32))


# ----------------------------------------------------------------------------- histograms


@dataclass
class Histogram:
    """Counts in HIST_BINS equal bins over [-span, span], plus one bin below and one above them."""

    span: float
    counts: np.ndarray  # (HIST_BINS + 2,) int64: below -span, the equal bins, above +span

    @property
    def edges(self) -> np.ndarray:
        """The HIST_BINS + 3 bin edges, -inf and +inf outermost."""
        return np.concatenate([[-np.inf], np.linspace(-self.span, self.span, HIST_BINS + 1), [np.inf]])

    def density(self) -> tuple[np.ndarray, np.ndarray]:
        """Centres and probability density of the equal bins (the outer two count toward the total)."""
        inner = np.linspace(-self.span, self.span, HIST_BINS + 1)
        width = inner[1] - inner[0]
        return (inner[:-1] + inner[1:]) / 2, self.counts[1:-1] / max(self.counts.sum(), 1) / width


def span_for(mean: float, std: float) -> float:
    """HIST_SPAN x the rms, sqrt(mean^2 + std^2); 1 where that is 0 or not finite."""
    span = HIST_SPAN * math.sqrt(mean * mean + std * std)
    return span if math.isfinite(span) and span > 0 else 1.0


def histogram(t: torch.Tensor, span: float | None = None) -> Histogram:
    """Bin every value of a tensor (none is lost); bins over +-HIST_SPAN x its rms unless `span`."""
    t = _wide(t).flatten()
    if span is None:
        span = span_for(t.mean().item(), t.std(correction=0).item())
    if t.numel() >= 2**24:  # float32 stops counting exactly at 2^24
        t = t.double()
    # One histc pass over HIST_BINS + 2 equal bins: the outer two lie just beyond +-span, and the
    # clamp moves everything farther out (inf too) into them. histc skips only NaN.
    w = 2 * span / HIST_BINS
    counts = torch.histc(t.clamp(-span - w / 2, span + w / 2), HIST_BINS + 2, -span - w, span + w)
    counts = counts.round().long().cpu().numpy()
    counts[-1] += t.numel() - counts.sum()  # NaN goes to the top bin
    return Histogram(span, counts)


# ----------------------------------------------------------------------------- one step's numbers


@dataclass
class LayerStats:
    """One watched layer's output on one step, and the gradient of the loss with respect to it."""

    name: str
    kind: str
    mean: float
    std: float
    saturation: float | None  # tanh only: fraction of outputs with |t| > SATURATED
    dead: float | None  # nonlinearities only: fraction of dead units (see GELU_DEAD_INPUT)
    hist: Histogram
    grad_mean: float | None = None  # None until the backward pass reaches this layer
    grad_std: float | None = None
    grad_hist: Histogram | None = None


def layer_stats(name: str, kind: str, out: torch.Tensor, inp: torch.Tensor | None = None) -> LayerStats:
    """Statistics of one layer's output; `inp`, its input, tells whether a GELU unit is dead."""
    x = _wide(out)
    rows = x.reshape(-1, x.shape[-1])  # (every position of the batch, units)
    saturated = rows.abs() > SATURATED if kind == "tanh" else None  # (rows, units)
    dead = dead_units(kind, rows, inp, saturated)  # (units,), or None where the kind has no rule
    # One stack, one .tolist(): one wait for the device, not four. nan stands for "not measured".
    # mean and std apart: torch.std_mean is ten times slower than the two on CPU.
    nan = x.new_tensor(math.nan)
    mean, std, saturation, dead_fraction = torch.stack([
        x.mean(), x.std(correction=0),
        nan if saturated is None else saturated.float().mean(),
        nan if dead is None else dead.float().mean()]).tolist()
    span = TANH_SPAN if kind == "tanh" else span_for(mean, std)
    return LayerStats(name, kind, mean, std, _none_if_nan(saturation), _none_if_nan(dead_fraction),
                      histogram(x, span))


def dead_units(kind: str, rows: torch.Tensor, inp, saturated) -> torch.Tensor | None:
    """(units,) True where no row of the batch passes gradient through the unit (rules at the top)."""
    if kind == "tanh":
        return saturated.all(0)  # makemore's all-white column
    if kind == "relu":
        return rows.amax(0) <= 0  # a max over the batch: a reduction, no batch-sized temporary
    if kind == "gelu" and inp is not None:
        return inp.detach().reshape(rows.shape).amax(0) < GELU_DEAD_INPUT
    return None


def add_grad_stats(stats: LayerStats, grad: torch.Tensor) -> None:
    """Fill in the statistics of the gradient with respect to a layer's output."""
    g = _wide(grad)
    stats.grad_mean, stats.grad_std = torch.stack([g.mean(), g.std(correction=0)]).tolist()
    stats.grad_hist = histogram(grad, span_for(stats.grad_mean, stats.grad_std))


@dataclass
class WeightStats:
    """One weight matrix's gradient on one step, beside the spread of the weights themselves."""

    name: str
    shape: tuple[int, ...]
    grad_mean: float
    grad_std: float
    data_std: float
    hist: Histogram  # of the gradient

    @property
    def grad_data(self) -> float:
        """grad.std() / data.std(): how large a plain lr x grad step is next to the weights."""
        return self.grad_std / self.data_std if self.data_std > 0 else math.inf


def weight_stats(name: str, p: torch.Tensor) -> WeightStats:
    """Statistics of one parameter's gradient (p.grad must be set)."""
    g, d = _wide(p.grad), _wide(p)
    grad_mean, grad_std, data_std = torch.stack([g.mean(), g.std(correction=0), d.std(correction=0)]).tolist()
    return WeightStats(name, tuple(p.shape), grad_mean, grad_std, data_std,
                       histogram(p.grad, span_for(grad_mean, grad_std)))


@torch.no_grad()
def update_ratios(before: list[torch.Tensor], after: list[torch.Tensor]) -> torch.Tensor:
    """log10(std(after - before) / std(after)) per weight: the step really taken, next to the weight.

    Measured from the weights themselves, not from lr x grad: AdamW's step is not lr x grad.
    """
    return torch.stack([((_wide(a) - _wide(b)).std(correction=0) / _wide(a).std(correction=0)).log10()
                        for b, a in zip(before, after, strict=True)])


@dataclass
class Snapshot:
    """Everything measured on one tracked step; prints itself as a table and feeds the plots."""

    step: int
    layers: dict[str, LayerStats] = field(default_factory=dict)
    weights: dict[str, WeightStats] = field(default_factory=dict)
    loss: float | None = None

    def table(self) -> str:
        """The per-layer and per-weight numbers, one line each."""
        lines = [f"step {self.step}" + (f", loss {self.loss:.4f}" if self.loss is not None else "")]
        for s in self.layers.values():
            lines.append("  " + layer_line(s, grads=False) + " | grad " + _grad_text(s))
        for w in self.weights.values():
            lines.append("  " + weight_line(w))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _grad_text(s: LayerStats) -> str:
    return "-" if s.grad_std is None else f"mean {s.grad_mean:+.2e}, std {s.grad_std:.2e}"


def layer_line(s: LayerStats, grads: bool, pad: bool = True) -> str:
    """One layer's numbers as makemore prints them beside a histogram (pad: line up in columns)."""
    head = f"{s.name:{NAME_WIDTH}s} ({s.kind:9s}): " if pad else f"{s.name} ({s.kind}): "
    if grads:
        return head + _grad_text(s)
    line = head + f"mean {s.mean:+.4f}, std {s.std:.4f}"
    if s.saturation is not None:
        line += f", saturated {s.saturation:5.1%}"
    if s.dead is not None:
        line += f", dead {s.dead:5.1%}"
    return line


def weight_line(w: WeightStats, pad: bool = True) -> str:
    """One weight's gradient numbers as makemore prints them (pad: line up in columns)."""
    shape = "x".join(map(str, w.shape))
    head = f"{w.name:{NAME_WIDTH}s} {shape:>9s}" if pad else f"{w.name} {shape}"
    return (f"{head}: grad mean {w.grad_mean:+.2e}, std {w.grad_std:.2e}, "
            f"grad:data {w.grad_data:.2e}")


# ----------------------------------------------------------------------------- a run's numbers


@dataclass
class History:
    """A training run seen through the lens: numbers for every step and the tracked snapshots."""

    weight_names: list[str]
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)  # before clipping; nan when not measured
    clipped: list[bool] = field(default_factory=list)
    update_ratio: list[np.ndarray] = field(default_factory=list)  # one row of weights per step
    snapshots: list[Snapshot] = field(default_factory=list)

    def updates(self) -> np.ndarray:
        """(steps, weights) log10 update:data ratios."""
        return np.array(self.update_ratio, dtype=float).reshape(-1, len(self.weight_names))

    def save(self, path) -> None:
        """Write everything to one .npz file (plain arrays: np.load reads it without this module)."""
        layer_names = list(dict.fromkeys(n for s in self.snapshots for n in s.layers))
        kinds = {n: s.layers[n].kind for s in self.snapshots for n in s.layers}
        arrays = dict(
            steps=np.array(self.steps, dtype=np.int64), loss=np.array(self.loss, dtype=float),
            lr=np.array(self.lr, dtype=float), grad_norm=np.array(self.grad_norm, dtype=float),
            clipped=np.array(self.clipped, dtype=bool), update_ratio=self.updates(),
            weight_names=np.array(self.weight_names, dtype=str),
            layer_names=np.array(layer_names, dtype=str),
            layer_kinds=np.array([kinds[n] for n in layer_names], dtype=str),
            snap_steps=np.array([s.step for s in self.snapshots], dtype=np.int64),
            snap_loss=np.array([_nan_if_none(s.loss) for s in self.snapshots], dtype=float),
        )
        arrays.update(_grid([s.layers for s in self.snapshots], layer_names, "layer", _LAYER_FIELDS))
        arrays.update(_grid([s.weights for s in self.snapshots], self.weight_names, "weight",
                            _WEIGHT_FIELDS))
        arrays["weight_shapes"] = np.array(
            [next((list(s.weights[n].shape) for s in self.snapshots if n in s.weights), [0, 0])
             for n in self.weight_names], dtype=np.int64).reshape(-1, 2)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path) -> History:
        """Read a file written by `save` (or a run folder holding diagnostics.npz)."""
        path = Path(path)
        if path.is_dir():
            path = path / "diagnostics.npz"
        if not path.exists():
            raise UserError(f"no diagnostics at {path}: train with --diag first")
        with np.load(path) as npz:
            a = dict(npz)  # each array read once: an NpzFile decompresses again on every a[key]
        h = cls(weight_names=a["weight_names"].tolist(), steps=a["steps"].tolist(), loss=a["loss"].tolist(),
                lr=a["lr"].tolist(), grad_norm=a["grad_norm"].tolist(), clipped=a["clipped"].tolist(),
                update_ratio=list(a["update_ratio"]))
        layer_names = a["layer_names"].tolist()
        layer_kinds = dict(zip(layer_names, a["layer_kinds"].tolist(), strict=True))
        for i, step in enumerate(a["snap_steps"]):
            snap = Snapshot(int(step), loss=_none_if_nan(a["snap_loss"][i]))
            for j, name in enumerate(layer_names):
                v = {f: _none_if_nan(a[f"layer_{f}"][i, j]) for f in _LAYER_FIELDS}
                if v["mean"] is None:
                    continue
                snap.layers[name] = LayerStats(
                    name, layer_kinds[name], v["mean"], v["std"], v["saturation"], v["dead"],
                    _hist(a, "layer_hist", i, j), v["grad_mean"], v["grad_std"],
                    _hist(a, "layer_grad_hist", i, j))
            for j, name in enumerate(h.weight_names):
                v = {f: _none_if_nan(a[f"weight_{f}"][i, j]) for f in _WEIGHT_FIELDS}
                if v["grad_std"] is not None:
                    snap.weights[name] = WeightStats(name, tuple(int(n) for n in a["weight_shapes"][j]),
                                                     v["grad_mean"], v["grad_std"], v["data_std"],
                                                     _hist(a, "weight_hist", i, j))
            h.snapshots.append(snap)
        return h


_LAYER_FIELDS = ("mean", "std", "saturation", "dead", "grad_mean", "grad_std")
_WEIGHT_FIELDS = ("grad_mean", "grad_std", "data_std")
_HISTS = {"layer": ("hist", "grad_hist"), "weight": ("hist",)}


def _nan_if_none(v) -> float:
    """None (not measured) as nan, for a float array."""
    return math.nan if v is None else v


def _none_if_nan(v) -> float | None:
    """nan back to None."""
    return None if math.isnan(v) else float(v)


def _grid(per_step: list[dict], names: list[str], prefix: str, fields: tuple[str, ...]) -> dict:
    """(steps, names) arrays of each field and (steps, names, bins) histogram counts; nan: missing."""
    shape = (len(per_step), len(names))
    out = {f"{prefix}_{f}": np.full(shape, np.nan) for f in fields}
    for h in _HISTS[prefix]:
        out[f"{prefix}_{h}_span"] = np.full(shape, np.nan)
        out[f"{prefix}_{h}_counts"] = np.zeros(shape + (HIST_BINS + 2,), dtype=np.int64)
    for i, stats in enumerate(per_step):
        for j, name in enumerate(names):
            if name not in stats:
                continue
            for f in fields:
                out[f"{prefix}_{f}"][i, j] = _nan_if_none(getattr(stats[name], f))
            for h in _HISTS[prefix]:
                hist = getattr(stats[name], h)
                if hist is not None:
                    out[f"{prefix}_{h}_span"][i, j] = hist.span
                    out[f"{prefix}_{h}_counts"][i, j] = hist.counts
    return out


def _hist(a, key: str, i: int, j: int) -> Histogram | None:
    span = a[f"{key}_span"][i, j]
    return None if math.isnan(span) else Histogram(float(span), a[f"{key}_counts"][i, j])


# ----------------------------------------------------------------------------- health checks


@dataclass(frozen=True)
class Problem:
    """One failed health check: which check, where, and what to do about it, in one line."""

    check: str  # a key of CHECKS
    where: str
    message: str


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


def recent_median(values: np.ndarray) -> float:
    """Median over the last UPDATE_WINDOW steps (rows), nan ignored; nan when nothing is left."""
    window = values[-UPDATE_WINDOW:]
    window = window[~np.isnan(window)]
    return float(np.median(window)) if window.size else math.nan


def median_update(history: History) -> float:
    """Median log10 update:data over the last UPDATE_WINDOW steps and all weights (nan: no steps)."""
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
    m = median_update(history)
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


# ----------------------------------------------------------------------------- the monitor


class Monitor:
    """Watches a model while it trains; the engine calls its five hooks each step (see module doc).

    Only the first forward of a tracked step is measured (later micro-batches of the same step are
    skipped); weight gradients are read after the last backward, before clipping.
    """

    def __init__(self, model: nn.Module, every: int = 100, log=None):
        if every < 1:
            raise UserError(f"diagnostics every {every} steps: must be at least 1")
        from tqdm import tqdm

        self.model, self.every = model, every
        self.log = log or tqdm.write  # prints above a progress bar without breaking it
        self.layers = tracked_layers(model)
        self.weights = [(n, p) for n, p in model.named_parameters() if p.ndim == 2 and p.requires_grad]
        self._history = History([n for n, _ in self.weights])
        self._current: Snapshot | None = None  # the tracked step in progress
        self._hooks: list = []
        self._before: list[torch.Tensor] = []  # the weights before the step, in buffers made once
        self._before_step: int | None = None  # (a fresh copy each step costs more than the copy itself)
        self._pending: list[torch.Tensor] = []  # update ratios still on the device (no sync per step)
        self._warned: set[tuple[str, str]] = set()

    def is_tracked(self, step: int) -> bool:
        """Whether this step is measured in full."""
        return step in EARLY_STEPS or step % self.every == 0

    # the five hooks, in the order the engine calls them

    def start_step(self, step: int) -> bool:
        """Before the forward pass: on a tracked step, hook every watched layer; True if tracked."""
        self._remove_hooks()
        if not self.is_tracked(step):
            self._current = None
            return False
        self._current = Snapshot(step)
        for name, kind, module in self.layers:
            self._hooks.append(module.register_forward_hook(self._on_forward(name, kind)))
        return True

    def after_backward(self, step: int) -> None:
        """After the backward pass (before clipping): read weight gradients, check the snapshot."""
        snap = self._current
        self._remove_hooks()  # evaluations between steps must not be measured
        if snap is None or snap.step != step:
            return
        # the modules' order (a parent before its children: blocks.0.mlp, then blocks.0.mlp.gelu),
        # not the order the hooks fired in (children first)
        order = [name for name, _, _ in self.layers]
        snap.layers = {name: snap.layers[name] for name in order if name in snap.layers}
        for name, p in self.weights:
            if p.grad is not None:
                snap.weights[name] = weight_stats(name, p)
        self._history.snapshots.append(snap)
        self._warn(step, check_snapshot(snap))

    def before_update(self, step: int) -> None:
        """Just before optimizer.step(): remember the weights, to measure the step it takes."""
        if not self._before:
            self._before = [torch.empty_like(p) for _, p in self.weights]
        for buffer, (_, p) in zip(self._before, self.weights, strict=True):
            buffer.copy_(p.detach())
        self._before_step = step

    def after_update(self, step: int, loss: float, lr: float, grad_norm: float | None = None,
                     clipped: bool = False) -> None:
        """After optimizer.step(): record the update ratios and this step's loss, lr, norm, clipping."""
        h = self._history
        if self._before_step == step:
            self._pending.append(update_ratios(self._before, [p for _, p in self.weights]))
            self._before_step = None
        else:
            # no before_update this step: a row of nan keeps the rows in step with the steps
            self._pending.append(torch.full((len(self.weights),), math.nan, device=self.weights[0][1].device))
        h.steps.append(step)
        h.loss.append(float(loss))
        h.lr.append(float(lr))
        h.grad_norm.append(math.nan if grad_norm is None else float(grad_norm))
        h.clipped.append(bool(clipped))
        if self._current is not None and self._current.step == step:
            self._current.loss = h.loss[-1]
        if self.is_tracked(step) or not math.isfinite(h.loss[-1]):
            self._flush()
            if len(h.steps) >= UPDATE_WINDOW or not math.isfinite(h.loss[-1]):  # no alarm mid-warmup
                self._warn(step, check_training(h))

    def finish(self, out_dir=None) -> list[Problem]:
        """Print the health report; with out_dir, write diagnostics.npz, health.txt and PNGs there."""
        self._remove_hooks()
        history = self.history
        if not _is_main_process():
            return check(history)  # one process reports and writes
        report = health_report(history)
        self.log(report)
        if out_dir is not None:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            history.save(out / "diagnostics.npz")
            (out / "health.txt").write_text(report + "\n")
            from nanogpt.diagnostics_plots import save_figures  # matplotlib only when PNGs are asked for

            save_figures(history, out)
            self.log(f"diagnostics: wrote diagnostics.npz, health.txt and plots to {out}")
        return check(history)

    @property
    def history(self) -> History:
        """Everything recorded so far."""
        self._flush()
        return self._history

    # inside

    def _on_forward(self, name: str, kind: str):
        def hook(module, inputs, output):
            snap = self._current
            if snap is None or name in snap.layers:  # a later micro-batch of this step
                return
            stats = layer_stats(name, kind, output, inputs[0] if inputs else None)
            snap.layers[name] = stats
            if output.requires_grad:  # the gradient arrives during backward; nothing is retained
                output.register_hook(lambda grad: add_grad_stats(stats, grad))
        return hook

    def _remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    def _flush(self) -> None:
        if self._pending:
            self._history.update_ratio += list(torch.stack(self._pending).cpu().double().numpy())
            self._pending = []

    def _warn(self, step: int, problems: list[Problem]) -> None:
        for p in problems:  # each check and place is reported once
            if (p.check, p.where) not in self._warned:
                self._warned.add((p.check, p.where))
                self.log(f"diagnostics warning at step {step}: {p.message}")


def _is_main_process() -> bool:
    """True outside torchrun, and on rank 0 under it."""
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def snapshot(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Snapshot:
    """One forward and backward pass on a batch, measured; buffers are restored and .grad cleared."""
    buffers = {name: b.clone() for name, b in model.named_buffers()}  # e.g. BatchNorm running stats
    monitor = Monitor(model, every=1, log=lambda _: None)
    model.zero_grad(set_to_none=True)
    monitor.start_step(0)
    try:
        _, loss = model(x, y)
        loss.backward()
        monitor.after_backward(0)
    finally:  # a failed pass must not leave hooks, gradients or changed BatchNorm statistics behind
        monitor._remove_hooks()
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
    snap = monitor.history.snapshots[-1]
    snap.loss = loss.item()
    return snap
