"""One asked trial, run to its end: the objective, what it recorded, and `tell`.

The objective runs with a heartbeat beating for it and a TrialRecorder buffering its writes.
However it ends (a value, pruned, an exception, a signal), its attrs are flushed and the study
is told, both retried while the database is unreachable, so a trial that finished stays
finished. If another worker failed the trial meanwhile (this worker was silent past `grace`),
the result is dropped with one warning line: the queued retry runs it again.

Whatever the objective raises, `sys.exit()` and a KeyboardInterrupt of its own included, fails
its trial and no more, like any exception; only a signal (`hpo.signals`) stops the worker.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from hpo.store import optuna_compat as compat
from hpo.store.heartbeat import Heartbeat, queue_retry
from hpo.store.recorder import TrialRecorder
from hpo.store.retry import connection_error
from hpo.training.divergence import DivergenceMonitor

if TYPE_CHECKING:
    from hpo.signals import StopSignals
    from hpo.spec import StudySpec
    from hpo.store.retry import Retrying
    from hpo.worker.objective import Objective

logger = logging.getLogger("hpo")


@dataclass
class StartedTrial:
    """A trial whose recording and heartbeat have begun; `TrialRunner.end` ends both."""

    study: optuna.Study
    trial: optuna.Trial
    recorder: TrialRecorder
    exits: ExitStack  # the heartbeat
    clock: float = field(default_factory=time.perf_counter)


@dataclass
class Outcome:
    """How a trial's objective ended, before the study is told."""

    state: TrialState
    value: float | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    lost_database: bool = False  # it failed because the database went away while it ran


class TrialRunner:
    """Runs asked trials of one study in this worker; counts the objective's failures."""

    def __init__(self, spec: StudySpec, objective: Objective, signals: StopSignals,
                 retrying: Retrying, worker_id: str = "") -> None:
        self.spec = spec
        self.objective = objective
        self.signals = signals
        self.retrying = retrying
        self.host = socket.gethostname()
        self.worker: dict[str, Any] = {"worker_host": self.host, "worker_pid": os.getpid()}
        if worker_id:
            self.worker["worker_id"] = worker_id
        self.failures_in_a_row = 0
        self.last_error: BaseException | None = None
        self.last_reason = ""  # the last failure's `fail_reason`

    def __call__(self, study: optuna.Study, trial: optuna.Trial) -> Outcome:
        """Run `trial` and tell the study; returns how it ended."""
        def objective() -> float:
            with self.signals.objective_running():
                return self.objective(trial)

        return self.end(self.begin(study, trial), objective)

    def begin(self, study: optuna.Study, trial: optuna.Trial) -> StartedTrial:
        """Start recording `trial` and its heartbeat, before its objective runs."""
        divergence = self.spec.pruner.divergence
        recorder = TrialRecorder(
            compat.study_storage(study), compat.trial_id(trial),
            DivergenceMonitor(divergence.factor) if divergence else None,
            # The built-in trainer applies the rule to each training step itself; its
            # per-epoch reports are metrics (a validation loss may rise), not the cost.
            reports_are_costs=self.spec.direction == "minimize"
            and not self.spec.objective.trainer,
        )
        compat.route_trial_writes(trial, recorder)
        attrs = dict(self.worker)
        if self.spec.heartbeat:
            link = compat.system_attrs_at_start(trial).get("failed_trial")
            if link is not None:
                attrs["retry_of"] = link
        recorder.set_attrs(attrs)
        started = StartedTrial(study, trial, recorder, ExitStack())
        started.exits.enter_context(self._heartbeat(study, trial))
        recorder.start()
        return started

    def end(self, started: StartedTrial, body: Callable[[], float]) -> Outcome:
        """Run the rest of the trial's objective (`body`: its value, or its exception),
        then tell the study; returns how it ended. A signal interrupts `body` only where it
        says so (`StopSignals.objective_running`)."""
        study, trial, recorder = started.study, started.trial, started.recorder
        with started.exits:
            outcome = self._execute(trial, body, started.clock)
            recorder.close()
            recorder.set_attrs(outcome.attrs)
            stored = self._store(study, trial, recorder, outcome)
        if stored is not None and stored != outcome.state:
            logger.warning(
                "trial %d was failed by another worker while it ran (this worker sent no "
                "heartbeat for %s s); its result is dropped and its retry runs it again",
                trial.number, self.spec.heartbeat.grace if self.spec.heartbeat else "?")
        return outcome

    def _heartbeat(self, study: optuna.Study, trial: optuna.Trial) -> AbstractContextManager:
        backend = compat.rdb_backend(compat.study_storage(study))
        if not self.spec.heartbeat or backend is None:
            return nullcontext()
        return Heartbeat(backend, compat.trial_id(trial), self.spec.heartbeat.interval,
                         on_lost=self.retrying.on_lost)

    def _execute(self, trial: optuna.Trial, body: Callable[[], float], started: float
                 ) -> Outcome:
        try:
            value = body()
            outcome = Outcome(TrialState.COMPLETE, _finite(value))
            self.failures_in_a_row = 0
        except optuna.TrialPruned as e:
            # It carries why (`objective.why_pruned`), unless the objective said nothing.
            reason = str(e) or "pruned by the objective"
            outcome = Outcome(TrialState.PRUNED, attrs={"prune_reason": reason})
            self.failures_in_a_row = 0
        except BaseException as e:  # sys.exit() and KeyboardInterrupt too: it is user code
            outcome = self._failed(trial, e)
        outcome.attrs["duration_s"] = round(time.perf_counter() - started, 6)
        return outcome

    def _failed(self, trial: optuna.Trial, error: BaseException) -> Outcome:
        """The end of a trial whose objective raised `error`: FAIL, and why."""
        if self.signals.stop.is_set() and not isinstance(error, Exception):
            # This worker's signal handler raised a KeyboardInterrupt (`hpo.signals`), which
            # the objective may have turned into a sys.exit(): the worker stops.
            return Outcome(TrialState.FAIL, attrs={"fail_reason": "interrupted by a signal"})
        lost = connection_error(error) if isinstance(error, Exception) else None
        if lost is not None:  # not the objective's fault: the database went away
            reason = f"lost the database while it ran: {type(lost).__name__}"
        else:
            reason = failure_reason(error)
            self.failures_in_a_row += 1
            self.last_error, self.last_reason = error, reason
        logger.warning("trial %d failed: %s", trial.number, reason,
                       exc_info=logger.isEnabledFor(logging.DEBUG))
        return Outcome(TrialState.FAIL, attrs={"fail_reason": reason},
                       lost_database=lost is not None)

    def _store(self, study: optuna.Study, trial: optuna.Trial, recorder: TrialRecorder,
               outcome: Outcome) -> TrialState | None:
        """Flush the trial's rows and tell its end; the state stored, None if unknown."""
        try:
            self.retrying(recorder.flush, f"saving trial {trial.number}")
            told = self.retrying(
                lambda: study.tell(trial, outcome.value, state=outcome.state,
                                   skip_if_finished=True),
                f"storing the end of trial {trial.number}")
        except optuna.exceptions.UpdateFinishedTrialError:
            return TrialState.FAIL  # another worker failed it between a read and a write
        except Exception:
            if self.signals.stop.is_set():
                return None  # stopped while the database was away; its heartbeat lapses
            raise
        if outcome.lost_database and told.state == TrialState.FAIL and self.spec.heartbeat:
            # Not the objective's fault: run it again, as a dead worker's trial would be.
            self.retrying(lambda: queue_retry(study, told, self.spec.heartbeat.max_retries),
                          f"queueing a retry of trial {trial.number}")
        return told.state


def failure_reason(error: BaseException) -> str:
    """A failed objective's `fail_reason`: its exception's type and message, and what a
    `sys.exit()` or a KeyboardInterrupt that no signal raised means."""
    if isinstance(error, SystemExit):
        code = "" if error.code is None else repr(error.code)
        return f"SystemExit: the objective called sys.exit({code})"
    if isinstance(error, KeyboardInterrupt):
        said = f" ({error})" if str(error) else ""
        return f"KeyboardInterrupt: raised by the objective, not by a signal{said}"
    return f"{type(error).__name__}: {error}"


def _finite(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"the objective returned {value!r}, not a number") from e
    if not math.isfinite(number):
        raise ValueError(f"the objective returned {number}, not a finite number")
    return number
