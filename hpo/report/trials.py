"""Trials as a report reads them: counts by state, best first, diverged or not."""

from __future__ import annotations

from typing import TYPE_CHECKING

from optuna.trial import TrialState

from hpo.training.divergence import DIVERGED

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

STATE_ORDER = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def diverged(trial: FrozenTrial) -> bool:
    """Whether the divergence rule stopped the trial (its `prune_reason` says so)."""
    return str(trial.user_attrs.get("prune_reason", "")).startswith(DIVERGED)


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """How many trials are in each state, every state listed."""
    counts = dict.fromkeys(STATE_ORDER, 0)
    for trial in trials:
        counts[trial.state.name] += 1
    return counts


def metric_name(study: optuna.Study) -> str:
    """The metric the study's spec names, or `value` for a study hpo did not create."""
    return study.user_attrs.get("hpo_spec", {}).get("metric", "value")


def ranked(study: optuna.Study, trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """COMPLETE trials, best first."""
    from optuna.study import StudyDirection

    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    maximize = study.direction == StudyDirection.MAXIMIZE
    return sorted(complete, key=lambda t: (-t.value if maximize else t.value, t.number))
