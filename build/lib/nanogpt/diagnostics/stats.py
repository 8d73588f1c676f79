"""The diagnostics lens, bottom layer: the numbers of one step, measured on tensors.

  forward    each watched layer's output: histogram, mean, std, tanh saturation, dead units
  backward   the gradient of the loss with respect to that output: histogram, mean, std
  weights    each weight matrix's gradient: histogram, std, and grad:data = grad.std() / data.std()
  updates    log10(std(change the optimizer step made) / std(weight))

Everything here is a pure function of tensors, or a dataclass holding what one came back with; no
hooks, no files, no verdicts. record.py stores these numbers, health.py
judges them, monitor.py (the Monitor) gathers them while a model trains.

A histogram is a fixed set of counts, not a copy of the tensor, so that measuring stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from nanogpt import gpt

# ----------------------------------------------------------------------------- what is measured

HIST_BINS = 60  # equal bins over [-span, span]; one more bin on each side catches everything beyond
HIST_SPAN = 4.0  # span = 4 x the tensor's rms
TANH_SPAN = 1.0 + 1e-6  # tanh outputs: [-1, 1], a hair wider so that exact +-1 (saturated) stays inside
SATURATED = 0.97  # |tanh| above this lets through under 1 - 0.97^2 = 6% of the gradient
GELU_DEAD_INPUT = -3.0  # below this input a GELU's slope is under 0.013 in size
# A unit (one feature: the last dimension) is dead when no row of the batch passes gradient through it:
#   ReLU: output <= 0 on every row;  GELU: input < GELU_DEAD_INPUT on every row;
#   tanh: |output| > SATURATED on every row (makemore's all-white column).
NAME_WIDTH = 26  # printed tables line up for names up to blocks.0.attn.proj.weight


def tracked_kinds() -> list[tuple[type, str]]:
    """The module types whose output is watched, each with the kind it is reported as."""
    from nanogpt import mlp  # imported here: the lens sees every stage, no stage sees the lens

    return [(mlp.Tanh, "tanh"), (nn.Tanh, "tanh"), (nn.GELU, "gelu"), (nn.ReLU, "relu"),
            (gpt.CausalSelfAttention, "attention"), (gpt.FeedForward, "mlp")]


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


# ----------------------------------------------------------------------------- a layer's output


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
    return LayerStats(name, kind, mean, std, None if saturated is None else saturation,
                      None if dead is None else dead_fraction, histogram(x, span))


def dead_units(kind: str, rows: torch.Tensor, inp, saturated) -> torch.Tensor | None:
    """(units,) True where no row of the batch passes gradient through the unit (rules at the top)."""
    if kind == "tanh":
        return saturated.all(0)  # makemore's all-white column
    if kind == "relu":
        return rows.amax(0) <= 0  # a max over the batch: a reduction, no batch-sized temporary
    if kind == "gelu" and inp is not None:
        return inp.detach().reshape(rows.shape).amax(0) < GELU_DEAD_INPUT
    return None


def add_grad_stats(stats: LayerStats, grad: torch.Tensor, scale: float = 1.0) -> None:
    """Fill in the statistics of the gradient with respect to a layer's output, times `scale`."""
    g = _wide(grad)  # (same shape as the layer's output)
    if scale != 1:  # a micro-batch's loss was divided by the number of micro-batches: undo it
        g = g * scale
    stats.grad_mean, stats.grad_std = torch.stack([g.mean(), g.std(correction=0)]).tolist()
    stats.grad_hist = histogram(g, span_for(stats.grad_mean, stats.grad_std))


# ----------------------------------------------------------------------------- a weight and its step


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
    """(weights,) log10(std(after - before) / std(after)): the step really taken, next to the weight.

    Measured from the weights themselves, not from lr x grad: AdamW's step is not lr x grad.
    A weight that did not move (frozen, or left out of the optimizer) gets nan, "no step", rather
    than log10(0) = -inf: one -inf would drag the median and cry "learning rate too low".
    """
    ratios = []
    for b, a in zip(before, after, strict=True):
        step = (_wide(a) - _wide(b)).std(correction=0)
        ratio = (step / _wide(a).std(correction=0)).log10()
        ratios.append(torch.where(step > 0, ratio, math.nan))  # on the device: no wait per weight
    return torch.stack(ratios)


# ----------------------------------------------------------------------------- one step, all of it


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
