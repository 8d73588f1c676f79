"""--max-minutes: a wall-clock budget turned into a number of steps, and kept true as the run goes.

The learning-rate schedule needs to know where the run ends (the cosine reaches min_lr at
max_iters), but a budget is given in minutes. So the budget times CALIBRATION_STEPS steps (after
skipping CALIBRATION_SKIP, which pay for warm-up: allocator, caches, compilation), sets max_iters
from that pace, and refits it at every evaluation from the pace measured since, so that a wrong
first guess (a busy moment, a slow first evaluation) is corrected while the run goes on. Each fit
leaves room for what the end of a run costs: the last evaluation, the full-split one, the files.
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist

CALIBRATION_SKIP, CALIBRATION_STEPS = 10, 50


class TimeBudget:
    """Sets run.cfg.max_iters so that the run, evaluations included, ends within --max-minutes."""

    def __init__(self, run):
        self.run = run
        self.minutes = run.cfg.max_minutes
        self.start_iter = run.iter
        self.step_times: list[float] = []
        self.pace = None  # (time, iter) from which the pace of the run is measured

    @property
    def fitted(self) -> bool:
        """True once max_iters comes from a measured pace (or when there is no budget)."""
        return self.run.budget_set

    def step_done(self, it: int, seconds: float) -> bool:
        """Count step `it`, which took `seconds`; True when this step completed the calibration
        and max_iters was set for the first time."""
        if self.fitted or it - self.start_iter < CALIBRATION_SKIP:
            return False
        if self.pace is None:
            self.pace = (time.time() - seconds, it)  # when this step started
        self.step_times.append(seconds)
        if len(self.step_times) < CALIBRATION_STEPS:
            return False
        mean_step = sum(self.step_times) / len(self.step_times)
        self._fit(mean_step + self.run.eval_seconds / self.run.cfg.eval_interval, first=True)
        return True

    def refit(self) -> None:
        """At an evaluation: refit max_iters from the pace measured since the calibration began."""
        it = self.run.iter
        if self.pace is not None and self.fitted and it > self.pace[1]:
            self._fit((time.time() - self.pace[0]) / (it - self.pace[1]), first=False)

    def _fit(self, seconds_per_step: float, first: bool) -> None:
        run, cfg = self.run, self.run.cfg
        left = self.minutes * 60 - (time.time() - run.t0)
        steps = run.iter + max(1, int((left - self.end_seconds()) / seconds_per_step))
        steps = torch.tensor(steps, device=run.rt.device)  # nccl broadcasts only tensors on the GPU
        if run.rt.world > 1:
            dist.broadcast(steps, src=0)  # rank 0's clock decides for all
        cfg.max_iters, run.budget_set = int(steps), True
        if first:
            run.log.say(f"time budget {self.minutes} min: {seconds_per_step:.3f} s/step with evaluations "
                        f"-> max_iters {cfg.max_iters} (refitted at every evaluation)")
        run.log.log(kind="budget", iter=run.iter, seconds_per_step=seconds_per_step, max_iters=cfg.max_iters)

    def end_seconds(self) -> float:
        """What the end of a run costs: the last evaluation, the full-split one, the files."""
        run = self.run
        n_splits = len(run.eval_batches)
        per_token = run.eval_seconds / (n_splits * run.cfg.eval_iters * run.data.tokens_per_batch)
        sizes = run.data.sizes()
        full = sizes["val"] if run.data.form == "text" else sizes["train"] + sizes["val"]
        return run.eval_seconds + per_token * full + 2
