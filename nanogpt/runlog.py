"""A run's folder and what it tells: the lines it prints, metrics.jsonl, the progress bar, loss.png.

Only rank 0 (the one process of a plain run) writes or prints; the other processes of a torchrun
launch get a RunLog that stays silent, so the training loop never asks who it is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm


class RunLog:
    """Printing (above the progress bar) and metrics.jsonl, for rank 0."""

    def __init__(self, out: Path, active: bool, progress: bool, quiet: bool = False):
        self.out, self.active, self.progress = out, active, progress and active and not quiet
        self.quiet = quiet  # a run started from a lecture: only warnings are printed
        self.metrics = None
        self.bar = None

    def open(self, resumed_at: int | None) -> None:
        """Start metrics.jsonl; on resume, keep only what was logged up to the checkpoint's step
        (what the killed run logged after it is about to be redone)."""
        if not self.active:
            return
        path = self.out / "metrics.jsonl"
        kept = []
        if resumed_at is not None and path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by the kill
                    continue
                if record.get("iter", 0) <= resumed_at:
                    kept.append(line + "\n")
        path.write_text("".join(kept), encoding="utf-8")
        self.metrics = open(path, "a", encoding="utf-8")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.metrics is not None:
            self.metrics.close()

    def say(self, msg: str) -> None:
        """Print a line above the progress bar, at once (in a quiet run, only warnings)."""
        if self.active and (not self.quiet or msg.startswith("warning")):
            tqdm.write(msg, file=sys.stdout)
            sys.stdout.flush()

    def log(self, **record) -> None:
        """Append one record to metrics.jsonl."""
        if self.metrics is not None:
            self.metrics.write(json.dumps(record) + "\n")
            self.metrics.flush()

    def start_bar(self, done: int, total: int) -> None:
        self.bar = tqdm(total=total, initial=done, disable=not self.progress, unit="step",
                        dynamic_ncols=True, file=sys.stderr)

    def move_bar(self, done: int, total: int, **postfix) -> None:
        """Bring the bar to `done` of `total` steps (the total moves when the time budget refits)."""
        if self.bar is not None:
            self.bar.total = total
            self.bar.update(done - self.bar.n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)


def plan_lines(cfg, data, model, device: str, dtype: str, compiled: bool, world: int,
               budget_open: bool) -> list[str]:
    """Two lines on what is about to be trained, and where."""
    n_params = sum(p.numel() for p in model.parameters())
    sizes = data.sizes()
    unit = "tokens" if data.form == "text" else "examples"
    what = (f"{cfg.stage} ({cfg.preset or 'custom'}): {n_params:,} parameters ({n_params / 1e6:.2f}M); "
            f"vocab {data.tokenizer.vocab_size}; {cfg.data}: {sizes['train']:,} train / "
            f"{sizes['val']:,} val {unit}")
    where = f"{device}, " + ("float32 with bfloat16 autocast" if dtype == "bfloat16" else dtype)
    if compiled:
        where += ", compiled"
    if device == "cpu":
        n_threads = torch.get_num_threads()
        where += f", {n_threads} thread" + ("s" if n_threads > 1 else "")
    if world > 1:
        where += f", {world} processes"
    budget = f" (budget {cfg.max_minutes} min)" if budget_open else ""
    return [what, f"device {where}; {cfg.max_iters} steps of {cfg.grad_accum} x {data.tokens_per_batch} "
                  f"{unit}" + budget]


def plot_losses(metrics_path, png_path):
    """The loss curve of a run from its metrics.jsonl, as a PNG (no display needed)."""
    from matplotlib.figure import Figure  # the object API: no backend, no global state

    lines = Path(metrics_path).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line]
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    ax.plot([r["iter"] for r in train], [r["loss"] for r in train], lw=0.6, alpha=0.5,
            label="train (each step's batch)")
    ax.plot([r["iter"] for r in evals], [r["train_loss"] for r in evals], "o-", label="train (fixed batches)")
    ax.plot([r["iter"] for r in evals], [r["val_loss"] for r in evals], "o-", label="val (fixed batches)")
    if evals:
        ax.set_title(f"final val {evals[-1]['val_loss']:.4f} at iter {evals[-1]['iter']}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(png_path, dpi=100, bbox_inches="tight")
