"""The divergence rule: a cost that explodes or turns NaN stops its run.

Free of Optuna and torch, so the trainer, the trial recorder and the pruners share it.

A mini-batch's loss is noisy: with Adam at a high learning rate the loss of step 1 or 2 is
often 5-25x the first and back below it within twenty steps, a run that goes on to the best
result. An explosion is different: the loss grows without bound and is 1e5x or NaN within a
few steps. So the trainer holds to the rule a *smoothed* cost, the bias-corrected moving
average that learning-rate finders use (beta 0.98), and only once `warmup` steps have shown
whether a rise was a spike; NaN and inf stop a run at once, warm-up or not.
"""

from __future__ import annotations

import math

DIVERGED = "diverged"
# The rule's factor where a study's file gives none: a cost above 3x its original diverged.
DEFAULT_FACTOR = 3.0

# The trainer's per-step smoothing: the moving average's weight on its past, and how many
# steps the average must cover before the ratio is tested.
SMOOTHING = 0.98
WARMUP_STEPS = 20


def divergence_reason(original: float, cost: float, step: int, factor: float,
                      what: str = "cost") -> str | None:
    """Why a cost has diverged from the run's original cost, or None if it has not.

    A cost diverges when it is NaN or infinite, or strictly exceeds `factor` times the original
    cost: exactly `factor` times goes on. The ratio test needs a positive original cost; with
    an original cost <= 0 only non-finite costs count as diverged.
    """
    if not math.isfinite(cost):
        return f"{DIVERGED}: {what} {cost} at step {step}"
    if not math.isfinite(original):
        return f"{DIVERGED}: original cost {original} at step {step}"
    if original > 0 and cost > factor * original:
        return (
            f"{DIVERGED}: {what} {cost:.4g} > {float(factor)!r} × original {original:.4g} "
            f"at step {step}"
        )
    return None


class MovingAverage:
    """The bias-corrected exponential moving average that learning-rate finders use."""

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self.count = 0
        self._average = 0.0

    def add(self, value: float) -> float:
        """Take the next value; return the corrected average of all values so far."""
        self.count += 1
        self._average = self.beta * self._average + (1 - self.beta) * value
        return self._average / (1 - self.beta ** self.count)


class DivergenceMonitor:
    """The divergence rule over one run's stream of costs; the first cost is the original.

    With `smoothing` (0 <= beta < 1) the ratio test applies to the bias-corrected exponential
    moving average of the costs, from the `warmup`-th cost after the original on; without it,
    to each cost as it comes. A NaN or infinite cost diverges at once either way.
    """

    def __init__(self, factor: float, smoothing: float = 0.0, warmup: int = 0) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), but got {smoothing=}.")
        self.factor = factor
        self.smoothing = smoothing
        self.warmup = warmup
        self.original: float | None = None
        self._average = MovingAverage(smoothing) if smoothing else None

    def check(self, cost: float, step: int) -> str | None:
        """Take the next cost; return why the run diverged, or None."""
        if self.original is None:
            self.original = cost
        if not math.isfinite(cost):
            return divergence_reason(self.original, cost, step, self.factor)
        if self._average is None:
            return divergence_reason(self.original, cost, step, self.factor)
        smoothed = self._average.add(cost)
        if self._average.count <= self.warmup:
            return None
        return divergence_reason(self.original, smoothed, step, self.factor, "smoothed cost")


def training_monitor(factor: float) -> DivergenceMonitor:
    """The rule as the built-in trainer applies it to per-step training losses."""
    return DivergenceMonitor(factor, smoothing=SMOOTHING, warmup=WARMUP_STEPS)
