"""The diagnostics lens, storage: a whole run's numbers, and the one .npz file they are saved in.

A History holds a row per step (loss, learning rate, gradient norm, clipping, update ratios) and
a Snapshot per tracked step. `save` writes plain numpy arrays, so that `np.load` reads the file
without this module: per-step series as they are, and each snapshot field as a (snapshots, names)
grid, nan where a snapshot lacks that layer or weight (and where a number was not measured).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nanogpt.diagnostics.stats import HIST_BINS, Histogram, LayerStats, Snapshot, WeightStats
from nanogpt.errors import UserError


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
        """(steps, weights) log10 update:data ratios; nan where a weight took no step."""
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
        arrays.update(_grid([s.layers for s in self.snapshots], layer_names, "layer"))
        arrays.update(_grid([s.weights for s in self.snapshots], self.weight_names, "weight"))
        arrays["weight_shapes"] = np.array(
            [next((list(s.weights[n].shape) for s in self.snapshots if n in s.weights), [0, 0])
             for n in self.weight_names], dtype=np.int64).reshape(-1, 2)  # (weights, 2)
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
        shapes = [tuple(int(n) for n in shape) for shape in a["weight_shapes"]]
        for i, step in enumerate(a["snap_steps"]):
            snap = Snapshot(int(step), loss=_none_if_nan(a["snap_loss"][i]))
            for j, name in enumerate(layer_names):
                v = _cell(a, "layer", i, j)
                if v["mean"] is not None:  # nan mean: this snapshot did not see this layer
                    snap.layers[name] = LayerStats(
                        name, layer_kinds[name], v["mean"], v["std"], v["saturation"], v["dead"],
                        v["hist"], v["grad_mean"], v["grad_std"], v["grad_hist"])
            for j, name in enumerate(h.weight_names):
                v = _cell(a, "weight", i, j)
                if v["grad_std"] is not None:  # nan: this weight had no gradient on this step
                    snap.weights[name] = WeightStats(name, shapes[j], v["grad_mean"], v["grad_std"],
                                                     v["data_std"], v["hist"])
            h.snapshots.append(snap)
        return h


# ----------------------------------------------------------------------------- the grid format

# What each kind of snapshot entry stores: its numbers, then its histograms. A number is saved as
# {prefix}_{field}, (snapshots, names); a histogram as {prefix}_{field}_span, (snapshots, names),
# and {prefix}_{field}_counts, (snapshots, names, HIST_BINS + 2).
_NUMBERS = {"layer": ("mean", "std", "saturation", "dead", "grad_mean", "grad_std"),
            "weight": ("grad_mean", "grad_std", "data_std")}
_HISTS = {"layer": ("hist", "grad_hist"), "weight": ("hist",)}


def _nan_if_none(v) -> float:
    """None (not measured) as nan, for a float array."""
    return math.nan if v is None else v


def _none_if_nan(v) -> float | None:
    """nan back to None."""
    return None if math.isnan(v) else float(v)


def _grid(per_step: list[dict], names: list[str], prefix: str) -> dict[str, np.ndarray]:
    """Each snapshot's entries (layers or weights, by name) as the arrays described above."""
    shape = (len(per_step), len(names))
    out = {f"{prefix}_{f}": np.full(shape, np.nan) for f in _NUMBERS[prefix]}
    for h in _HISTS[prefix]:
        out[f"{prefix}_{h}_span"] = np.full(shape, np.nan)
        out[f"{prefix}_{h}_counts"] = np.zeros(shape + (HIST_BINS + 2,), dtype=np.int64)
    for i, stats in enumerate(per_step):
        for j, name in enumerate(names):
            if name not in stats:
                continue
            for f in _NUMBERS[prefix]:
                out[f"{prefix}_{f}"][i, j] = _nan_if_none(getattr(stats[name], f))
            for h in _HISTS[prefix]:
                hist = getattr(stats[name], h)
                if hist is not None:
                    out[f"{prefix}_{h}_span"][i, j] = hist.span
                    out[f"{prefix}_{h}_counts"][i, j] = hist.counts
    return out


def _cell(a: dict[str, np.ndarray], prefix: str, i: int, j: int) -> dict:
    """One entry of the grid back: its numbers (None where nan) and its histograms (None where absent)."""
    cell = {f: _none_if_nan(a[f"{prefix}_{f}"][i, j]) for f in _NUMBERS[prefix]}
    for h in _HISTS[prefix]:
        span = a[f"{prefix}_{h}_span"][i, j]
        cell[h] = None if math.isnan(span) else Histogram(float(span), a[f"{prefix}_{h}_counts"][i, j])
    return cell
