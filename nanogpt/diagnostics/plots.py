"""Pictures of the diagnostics lens: histograms per layer, update:data ratios, the training curves.

Each `plot_*` function takes a Snapshot (one measured step, from `diagnostics.snapshot`), a
History (a whole run, from a Monitor or `History.load`) or a Monitor, returns a matplotlib Figure
and prints the numbers it draws, so that a learner can compare without squinting.

This module reads the numbers (stats, history, health) and never the Monitor, which imports it
to save its PNGs: a Monitor is recognised by its `.history`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nanogpt.diagnostics.health import UPDATE_GUIDE, UPDATE_WINDOW, median_update, recent_median
from nanogpt.diagnostics.record import History
from nanogpt.diagnostics.stats import NAME_WIDTH, Snapshot, layer_line, weight_line

DPI = 80  # modest: a lecture with a dozen of these figures stays under a megabyte
LEGEND_PT = 8  # the smallest text the course draws (the legends carry long lines of numbers)


def _figure(ncols: int = 1, nrows: int = 1, width: float = 9.6, height: float = 3.6):
    from matplotlib.figure import Figure  # no pyplot: no global state, and Agg draws the PNG

    _show_figures_in_notebooks()
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False).ravel()


def _show_figures_in_notebooks() -> None:
    """In Jupyter, let a returned Figure draw itself as a PNG (pyplot would do it, but we skip pyplot)."""
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and hasattr(shell, "kernel"):  # a notebook kernel, not the terminal
        select_figure_formats(shell, {"png"})


def _as_history(source) -> History:
    """A History as it is, or a Monitor's (anything with a .history)."""
    return source if isinstance(source, History) else source.history


def _as_snapshot(source) -> Snapshot:
    if isinstance(source, Snapshot):
        return source
    history = _as_history(source)
    if not history.snapshots:
        raise ValueError("no tracked step recorded yet")
    return history.snapshots[-1]


def plain_log_ticks(ax, axis: str = "y") -> None:
    """A log axis labelled 2, 3, 20 rather than 2x10^0, 3x10^0, 2x10^1: plain numbers read at a glance."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    which = ax.yaxis if axis == "y" else ax.xaxis
    which.set_major_formatter(plain)
    which.set_minor_formatter(plain)


def reader_name(name: str, kind: str | None, nth: int) -> str:
    """A legend's name for a layer or weight: "tanh layer 2", "weight matrix 3", not net.layers.4.

    The engine's MLP names its modules by position in a list (net.layers.4), which says nothing to a
    reader; a GPT's names (blocks.0.attn.proj) do say what the weight is, so they stay."""
    if not name.startswith("net.layers."):
        return name.removesuffix(".weight")
    return f"{kind} layer {nth}" if kind else f"weight matrix {nth}"


def legend_outside(ax) -> None:
    """The legend to the right of the axes, where it can cover no line."""
    ax.legend(fontsize=LEGEND_PT, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _plot_layers(source, grads: bool, verbose: bool):
    snap = _as_snapshot(source)
    layers = [s for s in snap.layers.values() if (s.grad_hist if grads else s.hist) is not None]
    if not layers:
        raise ValueError("no watched layer in this snapshot (the bigram has none)")
    kinds = list(dict.fromkeys(s.kind for s in layers))
    fig, axes = _figure(ncols=len(kinds), width=max(9.6, 6 * len(kinds)), height=4)
    what = "gradient of the loss w.r.t. the output" if grads else "output"
    for ax, kind in zip(axes, kinds, strict=True):
        for nth, s in enumerate((s for s in layers if s.kind == kind), start=1):
            x, y = (s.grad_hist if grads else s.hist).density()
            if verbose:
                print(layer_line(s, grads))
            number = layer_line(s, grads, pad=False).split(": ", 1)[1]
            ax.plot(x, y, label=f"{reader_name(s.name, s.kind, nth)}: {number}")
        ax.set_title(f"{kind} layers: {what} (step {snap.step})")
        ax.set_xlabel("gradient value" if grads else "output value")
        ax.set_ylabel("density")
        ax.legend(fontsize=LEGEND_PT)
    return fig


def plot_activations(source, verbose: bool = True):
    """Histograms of each watched layer's output, a panel per kind; prints mean, std, saturation."""
    return _plot_layers(source, grads=False, verbose=verbose)


def plot_activation_grads(source, verbose: bool = True):
    """Histograms of the gradient with respect to each watched layer's output; prints mean and std."""
    return _plot_layers(source, grads=True, verbose=verbose)


def plot_weight_grads(source, verbose: bool = True):
    """Histograms of each weight matrix's gradient; prints mean, std and grad:data."""
    snap = _as_snapshot(source)
    fig, (ax,) = _figure()
    for nth, w in enumerate(snap.weights.values(), start=1):
        x, y = w.hist.density()
        if verbose:
            print(weight_line(w))
        number = weight_line(w, pad=False).split(" ", 1)[1]  # its shape and numbers
        ax.plot(x, y, label=f"{reader_name(w.name, None, nth)} {number}")
    ax.set_title(f"weight gradients (step {snap.step})")
    ax.set_xlabel("gradient value")
    ax.set_ylabel("density")
    ax.legend(fontsize=LEGEND_PT)
    return fig


def plot_update_ratios(source, verbose: bool = True):
    """log10 update:data of each weight over the steps, against the -3 guide line; prints medians."""
    history = _as_history(source)
    updates = history.updates()  # (steps, weights); nan where a weight took no step
    fig, (ax,) = _figure()
    for j, name in enumerate(history.weight_names):
        median = recent_median(updates[:, j])
        said = "no step taken" if math.isnan(median) else f"{median:+.2f}"  # frozen, or not optimized
        if verbose:
            print(f"{name:{NAME_WIDTH}s}: median log10 update:data over the last {UPDATE_WINDOW} "
                  f"steps {said}")
        ax.plot(history.steps, updates[:, j], lw=1, label=f"{reader_name(name, None, j + 1)}: {said}")
    ax.axhline(UPDATE_GUIDE, color="k", ls="--", lw=1, label=f"guide: {UPDATE_GUIDE:g}")
    ax.set_xlabel("step")
    ax.set_ylabel("log10 std(update) / std(weight)")
    ax.set_title(f"update:data ratios; legend and title: medians over the last {UPDATE_WINDOW} steps "
                 f"(all weights: {median_update(history):+.2f})")
    ax.legend(fontsize=LEGEND_PT)
    return fig


def plot_training(source, verbose: bool = True):
    """Loss, learning rate and gradient norm (clipped steps marked) over the steps; prints them."""
    h = _as_history(source)
    fig, axes = _figure(ncols=3, width=15)
    if not h.steps:
        raise ValueError("no step recorded yet")
    steps, norms, clipped = np.array(h.steps), np.array(h.grad_norm, dtype=float), np.array(h.clipped)
    axes[0].plot(steps, h.loss, lw=1, label=f"loss: first {h.loss[0]:.4f}, last {h.loss[-1]:.4f}")
    axes[1].plot(steps, h.lr, lw=1, label=f"lr: max {np.nanmax(h.lr):.2e}, last {h.lr[-1]:.2e}")
    median = np.nanmedian(norms) if np.isfinite(norms).any() else math.nan
    axes[2].plot(steps, norms, lw=1, label=f"grad norm (before clipping): median {median:.3g}")
    if clipped.any():
        axes[2].plot(steps[clipped], norms[clipped], "r.", ms=3,
                     label=f"clipped: {clipped.mean():.0%} of steps")
    axes[2].set_yscale("log")  # one spike would flatten the rest on a linear axis
    plain_log_ticks(axes[2])
    for ax, title in zip(axes, ("loss", "learning rate", "gradient norm"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    if verbose:
        print("; ".join(line.get_label() for ax in axes for line in ax.get_lines()))
    return fig


def figures(history: History) -> dict[str, object]:
    """Every picture of a run, by file name: the first and last tracked steps, and the series."""
    out = {}
    steps = {s.step: s for s in (history.snapshots[:1] + history.snapshots[-1:])}
    for step, snap in steps.items():
        if snap.layers:  # the bigram has none
            out[f"activations_step{step}"] = plot_activations(snap, verbose=False)
            out[f"activation_grads_step{step}"] = plot_activation_grads(snap, verbose=False)
        out[f"weight_grads_step{step}"] = plot_weight_grads(snap, verbose=False)
    if history.steps:
        out["update_ratios"] = plot_update_ratios(history, verbose=False)
        out["training"] = plot_training(history, verbose=False)
    return out


def save_figures(history: History, out_dir) -> None:
    """Write every picture of a run as a PNG into out_dir."""
    for name, fig in figures(history).items():
        fig.savefig(Path(out_dir) / f"{name}.png", dpi=DPI)


def plot_attention(maps, labels, titles, colorbar_label="attention weight"):
    """A grid of attention maps (rows of panels, each (T, T): query rows, key columns) with one
    colour bar, a character under every column and beside every row, and room between the rows.

    maps: a list of rows, each a list of (T, T) arrays; labels: T printable strings (show "\\n" and
    "␣", not the characters); titles: the same shape as maps."""
    rows, cols = len(maps), len(maps[0])
    panel = 1.2 + 0.13 * len(labels)  # inches: room for every label at 8 points
    fig, axes = _figure(ncols=cols, nrows=rows, width=panel * cols + 1.2, height=panel * rows + 0.4)
    axes = axes.reshape(rows, cols)
    ticks = range(len(labels))
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            image = ax.imshow(np.asarray(maps[r][c]), cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(titles[r][c], fontsize=9)
            ax.set_xticks(ticks, labels, fontsize=8)
            ax.set_yticks(ticks, labels if c == 0 else [], fontsize=8)
            ax.tick_params(length=0)
            if r == rows - 1:
                ax.set_xlabel("key: the character read", fontsize=8)
        axes[r, 0].set_ylabel("query: the character reading", fontsize=8)
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label=colorbar_label)
    return fig
