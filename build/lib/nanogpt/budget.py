"""--max-minutes: a wall-clock budget turned into a number of steps.

The learning-rate schedule needs to know where the run ends (the cosine reaches min_lr at
max_iters), but a budget is given in minutes. So the budget times CALIBRATION_STEPS steps (after
skipping CALIBRATION_SKIP, which pay for warm-up: allocator, caches, compilation) and sets
max_iters from that pace, leaving room for what the end of a run costs (the last evaluation, the
full-split one, the files).

    budget = TimeBudget(minutes, t0, start_iter, fitted=False)
    fit = budget.step_done(it, seconds, end_seconds)    # a Fit once the calibration is done
    fit = budget.refit(it, end_seconds)                 # at each evaluation
"""

from __future__ import annotations

import time
from dataclasses import dataclass

CALIBRATION_SKIP, CALIBRATION_STEPS = 10, 50


@dataclass
class Fit:
    """A fitted schedule: the run's new max_iters and the pace it came from."""

    max_iters: int
    seconds_per_step: float


def end_seconds(eval_seconds: float, eval_tokens: int, final_tokens: int) -> float:
    """What the end of a run costs: one more evaluation, the full-split one (at the evaluation's
    measured pace per token), and 2 s for the files."""
    return eval_seconds + eval_seconds * final_tokens / max(eval_tokens, 1) + 2


class TimeBudget:
    """Fits max_iters so that the run, evaluations included, ends within `minutes` of t0."""

    def __init__(self, minutes: float, t0: float, start_iter: int, fitted: bool):
        self.minutes, self.t0, self.start_iter = minutes, t0, start_iter
        self.fitted = fitted or minutes == 0  # no budget, or a resumed run's saved fit
        self.step_times: list[float] = []
        self.pace = None  # (time, iter) from which the pace of the run is measured

    def step_done(self, it: int, seconds: float, end: float, eval_per_step: float) -> Fit | None:
        """Count step `it`, which took `seconds`; the first Fit once CALIBRATION_STEPS are timed.
        `eval_per_step`: the evaluations' cost spread over the steps between them."""
        if self.fitted or it - self.start_iter < CALIBRATION_SKIP:
            return None
        if self.pace is None:
            self.pace = (time.time() - seconds, it)  # when this step started
        self.step_times.append(seconds)
        if len(self.step_times) < CALIBRATION_STEPS:
            return None
        self.fitted = True
        return self._fit(it + 1, sum(self.step_times) / len(self.step_times) + eval_per_step, end)

    def refit(self, it: int, end: float) -> Fit | None:
        """At an evaluation: max_iters again, from the pace measured since the calibration began.
        The first fit saw 50 steps and no evaluation on a warm machine; a busy moment, or an
        evaluation slower than guessed, would end the run early or late. Refitting keeps it true."""
        if self.pace is None or not self.fitted or it <= self.pace[1]:
            return None
        return self._fit(it, (time.time() - self.pace[0]) / (it - self.pace[1]), end)

    def _fit(self, it: int, seconds_per_step: float, end: float) -> Fit:
        left = self.minutes * 60 - (time.time() - self.t0)
        return Fit(it + max(1, int((left - end) / seconds_per_step)), seconds_per_step)
