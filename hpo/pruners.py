"""DivergencePruner, early-stopping pruners by name, and their composition."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    PercentilePruner,
    SuccessiveHalvingPruner,
)
from optuna.study import StudyDirection

from hpo.divergence import DIVERGED, DivergenceMonitor, divergence_reason

__all__ = [
    "DIVERGED", "CompositePruner", "DivergenceMonitor", "DivergencePruner", "EARLY_PRUNERS",
    "divergence_reason", "make_pruner",
]

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from hpo.spec import PrunerSpec


class DivergencePruner(BasePruner):
    """Prunes a trial whose latest intermediate value diverged from its first.

    For studies that minimize, where intermediate values are the cost. Usable in plain Optuna:
    ``optuna.create_study(pruner=DivergencePruner(3.0))``.
    """

    def __init__(self, factor: float = 3.0) -> None:
        if factor <= 1.0:
            raise ValueError(f"factor must be greater than 1, but got {factor=}.")
        self.factor = factor

    def reason(self, study: optuna.Study, trial: FrozenTrial) -> str | None:
        """Why the trial diverged, or None."""
        if study.direction != StudyDirection.MINIMIZE or not trial.intermediate_values:
            return None
        steps = sorted(trial.intermediate_values)
        original = trial.intermediate_values[steps[0]]
        latest = trial.intermediate_values[steps[-1]]
        return divergence_reason(original, latest, steps[-1], self.factor)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self.reason(study, trial) is not None


EARLY_PRUNERS: dict[str, Callable[..., BasePruner]] = {
    "median": MedianPruner,
    "percentile": PercentilePruner,
    "successive_halving": SuccessiveHalvingPruner,
    "hyperband": HyperbandPruner,
}


class CompositePruner(BasePruner):
    """Divergence and an optional early-stopping pruner: a trial stops if either says so.

    The reason for each trial it prunes is kept in `reasons` (trial number -> text starting
    with `diverged` or the early pruner's name), for the runner to record as `prune_reason`.
    """

    def __init__(
        self,
        divergence: DivergencePruner | None,
        early: BasePruner | None = None,
        early_name: str = "",
    ) -> None:
        self.divergence = divergence
        self.early = early
        self.early_name = early_name
        self.reasons: dict[int, str] = {}

    def reason(self, study: optuna.Study, trial: FrozenTrial) -> str | None:
        """Why the trial should stop now, or None."""
        if self.divergence is not None:
            reason = self.divergence.reason(study, trial)
            if reason is not None:
                return reason
        if self.early is not None and self.early.prune(study, trial):
            step = trial.last_step
            value = trial.intermediate_values[step] if step is not None else float("nan")
            return f"{self.early_name}: stopped early at step {step} with value {value:.4g}"
        return None

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        reason = self.reason(study, trial)
        if reason is not None:
            self.reasons[trial.number] = reason
        return reason is not None


def make_pruner(spec: PrunerSpec) -> CompositePruner:
    """The study's pruner: the divergence rule (unless off) composed with the early pruner."""
    divergence = DivergencePruner(spec.divergence.factor) if spec.divergence else None
    early: BasePruner | None = None
    early_name = ""
    if spec.early is not None and spec.early.type != "none":
        early_name = spec.early.type
        options: dict[str, Any] = spec.early.options()
        early = EARLY_PRUNERS[early_name](**options)
    return CompositePruner(divergence, early, early_name)
