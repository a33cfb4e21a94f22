"""The study's budget: what it counts, and what a worker does next under the study lock.

`n_trials` is the whole study's total of finished trials (COMPLETE and PRUNED; failures and
trials carried over from a parent study do not count). A RUNNING trial reserves its slot, so
no number of workers overshoots; a queued trial (enqueued by a user, or a retry of a dead
worker's trial) takes a slot like any other when it starts, so it cannot overshoot either.
"""

from __future__ import annotations

import enum
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.store import optuna_compat as compat


class Move(enum.Enum):
    START = "start"  # start a trial: a queued one if any, else a new one
    WAIT = "wait"  # running trials hold the rest of the budget; wait for them
    DONE = "done"


def finished_count(counts: dict[TrialState, int], carried: int = 0) -> int:
    """Finished trials, as the budget counts them: COMPLETE and PRUNED (not FAIL), less the
    `carried` ones a refined study started with (`hpo.store.carry`: evidence, not work done)."""
    return counts[TrialState.COMPLETE] + counts[TrialState.PRUNED] - carried


def count_by_state(study: optuna.Study, connection: Any = None) -> dict[TrialState, int]:
    """How many of the study's trials are in each state.

    Optuna's own count loads every trial; a worker counts before each trial, so on a database
    it counts in SQL (on `connection`, the study lock's, if given).
    """
    backend = compat.rdb_backend(compat.study_storage(study))
    if backend is not None:
        return compat.count_by_state(backend, compat.study_id(study), connection)
    counts = dict.fromkeys(TrialState, 0)
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    return counts


def next_move(counts: dict[TrialState, int], budget: int | None, grid_left: int | None,
              heartbeats: bool = True, carried: int = 0) -> Move:
    """What a worker does next, given the study's trial counts (taken under the study lock).

    Without heartbeats a dead worker's trial would stay RUNNING for ever, so running trials
    reserve nothing and nobody waits for them (several workers may then overshoot).
    """
    finished = finished_count(counts, carried)
    running = counts[TrialState.RUNNING] if heartbeats else 0
    if budget is not None and finished >= budget:
        return Move.WAIT if running else Move.DONE
    if grid_left is not None and grid_left <= 0 and not counts[TrialState.WAITING]:
        return Move.WAIT if running else Move.DONE
    if budget is not None and finished + running >= budget:
        return Move.WAIT
    return Move.START


def grid_points_left(study: optuna.Study, size: int) -> int:
    """Grid points no trial has taken yet (a queued retry's point counts as taken)."""
    started = {t.system_attrs.get("grid_id") for t in study.get_trials(deepcopy=False)
               if t.state != TrialState.WAITING}
    return size - len(started - {None})


def running_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's RUNNING trials (what a waiting worker waits for)."""
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def describe_wait(trials: list[FrozenTrial], grace: float | None) -> str:
    """One line: which trials a worker waits for, on which workers, and for how long at most."""
    def worker(trial: FrozenTrial) -> str:
        attrs = trial.user_attrs
        if "worker_host" not in attrs:  # just asked, or asked outside hpo
            return " (unknown worker)"
        return f" ({attrs['worker_host']}:{attrs.get('worker_pid', '?')})"

    shown = ", ".join(f"{t.number}{worker(t)}" for t in trials[:5])
    shown += f" and {len(trials) - 5} more" if len(trials) > 5 else ""
    bound = (f"; a trial whose worker is silent for {grace:g} s is failed and retried"
             if grace else "")
    return (f"the budget is taken: waiting for running trial{'s' if len(trials) > 1 else ''} "
            f"{shown} to finish{bound}")
