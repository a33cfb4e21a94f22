"""The divergence rule: a cost that explodes or turns NaN stops its run.

Free of Optuna and torch, so the trainer, the trial recorder and the pruners share it.
"""

from __future__ import annotations

import math

DIVERGED = "diverged"


def divergence_reason(original: float, cost: float, step: int, factor: float) -> str | None:
    """Why a cost has diverged from the run's original cost, or None if it has not.

    A cost diverges when it is NaN or infinite, or strictly exceeds `factor` times the original
    cost: exactly `factor` times goes on. The ratio test needs a positive original cost; with
    an original cost <= 0 only non-finite costs count as diverged.
    """
    if not math.isfinite(cost):
        return f"{DIVERGED}: cost {cost} at step {step}"
    if not math.isfinite(original):
        return f"{DIVERGED}: original cost {original} at step {step}"
    if original > 0 and cost > factor * original:
        return (
            f"{DIVERGED}: cost {cost:.4g} > {float(factor)!r} × original {original:.4g} "
            f"at step {step}"
        )
    return None


class DivergenceMonitor:
    """The divergence rule over one run's stream of costs; the first cost is the original."""

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.original: float | None = None

    def check(self, cost: float, step: int) -> str | None:
        """Take the next cost; return why the run diverged, or None."""
        if self.original is None:
            self.original = cost
        return divergence_reason(self.original, cost, step, self.factor)
