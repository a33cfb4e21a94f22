"""DivergencePruner for plain Optuna, and the study's early-stopping pruner by name.

In `hpo run` the divergence rule is not a pruner: the trial recorder applies it to each
reported cost as it arrives and the trainer to each training step, so it stops a trial at
once rather than at its next `should_prune()`. The study's pruner is the early-stopping
pruner alone, an instance of Optuna's own class (Optuna treats a HyperbandPruner specially:
TPE and `tell` look only at the trials of the same bracket), which also remembers why it
stopped each trial.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    PercentilePruner,
    SuccessiveHalvingPruner,
)
from optuna.study import StudyDirection

from hpo.training.divergence import (
    DEFAULT_FACTOR,
    DIVERGED,
    DivergenceMonitor,
    divergence_reason,
)

__all__ = [
    "DIVERGED", "DivergenceMonitor", "DivergencePruner", "EARLY_PRUNERS", "divergence_reason",
    "make_pruner", "prune_reason",
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

    def __init__(self, factor: float = DEFAULT_FACTOR) -> None:
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


class _Explaining(BasePruner):
    """Mixed into an Optuna pruner: remembers, per trial number, why it pruned the trial."""

    label = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reasons: dict[int, str] = {}

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        pruned = super().prune(study, trial)
        if pruned:
            step = trial.last_step
            value = trial.intermediate_values[step] if step is not None else float("nan")
            self.reasons[trial.number] = (
                f"{self.label}: stopped early at step {step} with value {value:.4g}"
            )
        return pruned


class _Median(_Explaining, MedianPruner):
    label = "median"


class _Percentile(_Explaining, PercentilePruner):
    label = "percentile"


class _SuccessiveHalving(_Explaining, SuccessiveHalvingPruner):
    label = "successive_halving"


class _Hyperband(_Explaining, HyperbandPruner):
    label = "hyperband"


EARLY_PRUNERS: dict[str, Callable[..., BasePruner]] = {
    "median": _Median,
    "percentile": _Percentile,
    "successive_halving": _SuccessiveHalving,
    "hyperband": _Hyperband,
}


def make_pruner(spec: PrunerSpec) -> BasePruner:
    """The study's early-stopping pruner, or a NopPruner when the file names none."""
    if spec.early is None or spec.early.type == "none":
        return NopPruner()
    options: dict[str, Any] = spec.early.options()
    return EARLY_PRUNERS[spec.early.type](**options)


def prune_reason(pruner: BasePruner, trial_number: int) -> str | None:
    """Why the study's pruner stopped a trial (and forget it), or None if it did not."""
    reasons = getattr(pruner, "reasons", {})
    return reasons.pop(trial_number, None)
