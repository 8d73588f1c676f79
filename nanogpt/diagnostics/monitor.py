"""A lens on training: activations, their gradients, weight gradients and updates, layer by layer.

Makemore part 3 looks inside a network while it trains; this lens does the same for every stage:

  forward    each nonlinearity's output (Tanh, GELU, ReLU) and, in the GPT, each attention and
             feed-forward sub-block's output: histogram, mean, std, tanh saturation, dead units
  backward   the gradient of the loss with respect to each of those outputs: histogram, mean, std
  weights    each weight matrix's gradient: histogram, std, and grad:data = grad.std() / data.std()
  updates    log10(std(change the optimizer step made) / std(weight)), every step
  globally   loss, gradient norm before clipping, clip events, learning rate

Two ways in. The engine (`python -m nanogpt.train --diag`) drives a `Monitor` through five hooks
and calls `finish(out_dir)`, which writes diagnostics.npz, PNGs and health.txt. A notebook calls
`snapshot(model, x, y)` and draws it with the `plot_*` functions of plots.py, which print the
numbers they draw. (The lens's files: nanogpt/diagnostics/__init__.py.)

Staying cheap: hooks exist only on tracked steps (EARLY_STEPS and every `every`-th step), and a
histogram is a fixed set of counts, not a copy of the tensor. Only the update ratios are taken on
every step, since the "last 100 steps" check needs them: one copy of the weights and two std's each.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn

from nanogpt.diagnostics.health import (
    UPDATE_WINDOW,
    Problem,
    check,
    check_snapshot,
    check_training,
    health_report,
)
from nanogpt.diagnostics.record import History
from nanogpt.diagnostics.stats import (
    Snapshot,
    add_grad_stats,
    layer_stats,
    tracked_layers,
    update_ratios,
    weight_stats,
)
from nanogpt.errors import UserError

EARLY_STEPS = (0, 1, 2, 5, 10, 20, 50)  # always tracked: the first steps change the most


class Monitor:
    """Watches a model while it trains; the engine calls its five hooks each step (see module doc).

    Only the first forward of a tracked step is measured (later micro-batches of the same step are
    skipped); weight gradients are read after the last backward, before clipping. `grad_accum` is
    the number each micro-batch's loss is divided by before its backward: the gradients reaching the
    watched layers are that many times too small, and are scaled back up before they are measured.
    """

    def __init__(self, model: nn.Module, every: int = 100, log=None, grad_accum: int = 1):
        if every < 1:
            raise UserError(f"diagnostics every {every} steps: must be at least 1")
        if grad_accum < 1:
            raise UserError(f"diagnostics with grad_accum {grad_accum}: must be at least 1")
        from tqdm import tqdm

        self.model, self.every, self.grad_accum = model, every, grad_accum
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
            if p.grad is not None:  # .grad holds the mean over the micro-batches: no rescaling
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
                     clipped: bool | None = None, grad_clip: float = 0.0) -> None:
        """After optimizer.step(): record the update ratios and this step's loss, lr, norm, clipping.

        Clipping is `clipped`, or else worked out from grad_norm and the threshold `grad_clip` (0: none).
        loss and grad_norm may be numbers or one-element tensors.
        """
        h = self._history
        norm = math.nan if grad_norm is None else float(grad_norm)
        if clipped is None:
            clipped = grad_clip > 0 and norm > grad_clip
        if self._before_step == step:
            self._pending.append(update_ratios(self._before, [p for _, p in self.weights]))
            self._before_step = None
        else:
            # no before_update this step: a row of nan keeps the rows in step with the steps
            self._pending.append(torch.full((len(self.weights),), math.nan, device=self.weights[0][1].device))
        h.steps.append(step)
        h.loss.append(float(loss))
        h.lr.append(float(lr))
        h.grad_norm.append(norm)
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
            (out / "health.txt").write_text(report + "\n", encoding="utf-8")
            from nanogpt.diagnostics.plots import save_figures  # matplotlib only when PNGs are asked for

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
                output.register_hook(lambda grad: add_grad_stats(stats, grad, scale=self.grad_accum))
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
