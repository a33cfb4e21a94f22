"""One worker's loop: ask trials, run them, record how they ended, until done.

Asking takes the study lock, fails trials whose worker went silent (queueing their retries),
counts the study's trials and decides (`hpo.store.budget.next_move`): start a trial, wait for
running ones, or stop. A started trial is claimed and asked under the lock and run outside it
by the worker's strategy (`hpo.worker.packing`): one trial at a time to its end
(`hpo.worker.trial_run`), or with `train.pack` K > 1 up to K trials training at once, a batch a
pass. The strategy tells the study how each trial ended; the loop then counts them and checks
`max_failures_in_a_row`. Every database step is retried while the database is unreachable
(`hpo.store.retry`); every wait is bounded and ends within a second of a signal.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import optuna

from hpo.errors import HpoError
from hpo.report.note import write_study_note
from hpo.signals import StopSignals
from hpo.spec import distributions as space
from hpo.store import budget, optuna_compat
from hpo.store.budget import Move
from hpo.store.carry import carried_count
from hpo.store.heartbeat import Reaper
from hpo.store.locking import StudyLock
from hpo.store.retry import Retrying
from hpo.store.storage import dispose, mask_url, open_storage, resolve_storage_url
from hpo.store.study import Interrupted
from hpo.training import LOCAL_WORKERS_ENV
from hpo.worker import packing
from hpo.worker.objective import Objective, build_objective
from hpo.worker.opening import worker_study
from hpo.worker.trial_run import Outcome, TrialRunner

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from hpo.spec import StudySpec

logger = logging.getLogger("hpo")

# How often a worker whose budget is taken by others' running trials looks again.
WAIT_POLL_S = 0.5


@dataclass
class RunOptions:
    storage: str | None = None
    n_trials: int | None = None
    timeout: float | None = None
    quiet: bool = False
    worker_id: str = ""  # a label recorded on this worker's trials
    # Refresh the study's dashboard note at the end; `--workers` leaves it to the launcher.
    write_note: bool = True
    stage: str | None = None  # of a staged study file, run only this stage


@dataclass
class RunResult:
    study: optuna.Study | None  # None when a signal came before the study was opened
    storage_url: str  # masked
    # The trials this command ran to an end, by final state: {"COMPLETE": 8, "PRUNED": 2}.
    outcomes: dict[str, int]
    seconds: float
    summary: dict[str, Any] | None  # summary.summarize(study) at the end
    stopped_by: signal.Signals | None = None

    @property
    def trials_run(self) -> int:
        return sum(self.outcomes.values())

    @property
    def exit_code(self) -> int:
        from hpo.signals import EXIT_CODES

        return EXIT_CODES[self.stopped_by] if self.stopped_by else 0


def progress_bar(spec: StudySpec, total: int | None, done: int, quiet: bool) -> Any:
    """The study-wide progress bar on stderr: finished trials of the budget, best value."""
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=spec.name, unit="trial", disable=quiet,
                dynamic_ncols=True, leave=True)


def _best_value(study: optuna.Study) -> float | None:
    try:
        return study.best_value
    except ValueError:  # no completed trial yet
        return None


def run(spec: StudySpec, options: RunOptions, objective: Objective | None = None,
        storage: BaseStorage | None = None) -> RunResult:
    """Run trials of the spec's study until it has `n_trials` finished ones.

    `n_trials` counts the whole study's COMPLETE and PRUNED trials, so a rerun resumes where
    the last one stopped and any number of workers share the budget exactly. When it returns
    normally no trial of the study is RUNNING. Validation and the objective's import happen
    before the storage is touched. A launcher that forks workers passes the `objective` it
    built and the `storage` it opened once (its connections already let go, see
    `hpo.worker.workers`); this worker closes the connections it opens in it.
    """
    optuna_compat.check_versions()
    if objective is None:
        objective = build_objective(spec)
    url = resolve_storage_url(spec, options.storage)
    if storage is None:
        storage = open_storage(url)
    try:
        return _Worker(spec, options, objective, url, storage).run()
    finally:
        dispose(storage)


class _Worker:
    def __init__(self, spec: StudySpec, options: RunOptions, objective: Any, url: str,
                 storage: BaseStorage) -> None:
        self.spec = spec
        self.options = options
        self.url = url
        self.storage = storage
        self.backend = optuna_compat.rdb_backend(storage)  # None for in-memory storage
        self.signals = StopSignals()
        self.retrying = Retrying(url, self.signals.stop, on_lost=self._connection_lost)
        self.lock = StudyLock(self.backend, spec.name, self.signals.stop)
        self.trials = TrialRunner(spec, objective, self.signals, self.retrying,
                                  options.worker_id)
        self.strategy = packing.strategy(spec, self.trials)  # one at a time, or packed
        self.budget = options.n_trials or spec.n_trials
        self.grid_size = (space.grid_size(spec.search_space) if spec.sampler.type == "grid"
                          else None)
        self.study: Any = None
        self.carried = 0  # trials carried over from a parent study (`hpo.store.carry`)
        self.reaper: Reaper | None = None
        self.waited_for: tuple[int, ...] = ()

    def _connection_lost(self) -> None:
        if self.reaper is not None:
            self.reaper.connection_lost()

    def run(self) -> RunResult:
        started = time.perf_counter()
        with self.signals.installed():
            try:
                self.study = self.retrying(
                    lambda: worker_study(self.spec, self.storage, self.url, self.lock),
                    "opening the study")
            except Interrupted:
                return RunResult(None, mask_url(self.url), {}, time.perf_counter() - started,
                                 None, self.signals.received)
            # Fixed once the study is open: its first worker carried them under the lock.
            self.carried = self.retrying(lambda: carried_count(self.study), "opening the study")
            if self.spec.heartbeat:
                self.reaper = Reaper(self.study, self.spec.heartbeat)
            # Others may count once `ask` takes up this worker's claim. The grid sampler picks
            # its point inside `ask`, so a grid study keeps the lock until `ask` returns, or
            # two workers could pick the same point.
            self.study.on_ask = self.lock.release if self.grid_size is None else None
            outcomes = self._loop(started)
        try:
            summary = self.retrying(self._summarize, "summarizing the study")
        except Exception:
            if not self.signals.stop.is_set():
                raise
            summary = None  # stopped while the database was away: nothing more to show
        if self.options.write_note and summary is not None:
            write_study_note(self.study, self.spec, self.url, summary)
        return RunResult(self.study, mask_url(self.url), outcomes,
                         time.perf_counter() - started, summary, self.signals.received)

    def _summarize(self) -> dict[str, Any]:
        from hpo.report.edges import limits_for
        from hpo.report.summary import summarize

        return summarize(self.study, limits=limits_for(self.spec))

    def _loop(self, started: float) -> dict[str, int]:
        timeout = self.options.timeout or self.spec.timeout
        finished = budget.finished_count(budget.count_by_state(self.study), self.carried)
        # The bar's best is the study's at start, then this worker's: reading the study's best
        # after every trial would cost a query per trial for a number on the screen.
        self.best = _best_value(self.study)
        self.outcomes: Counter[str] = Counter()
        self.progress = progress_bar(self.spec, self.budget, finished, self.options.quiet)
        with self.progress:
            try:
                while not self.signals.stop.is_set():
                    timed_out = timeout is not None and time.perf_counter() - started >= timeout
                    move, asked = self._ask(timed_out)
                    if not asked and not len(self.strategy):  # nothing to run
                        if move != Move.WAIT:
                            break
                        self.signals.stop.wait(WAIT_POLL_S)
                        continue
                    self._record(self.strategy.run(self.study, asked))
            finally:
                # However the loop ends (a signal, an error), no trial is left RUNNING with
                # its heartbeat on: those still training are failed and told.
                self._count(self.strategy.close())
            if not self.signals.stop.is_set():
                counts = self.retrying(lambda: budget.count_by_state(self.study),
                                       "counting trials")
                self.progress.update(budget.finished_count(counts, self.carried)
                                     - self.progress.n)
        return dict(self.outcomes)

    def _ask(self, timed_out: bool) -> tuple[Move, list[optuna.Trial]]:
        """Claim and ask trials while the strategy has room for them and the budget allows;
        the last move decided (DONE once timed out) and the trials asked."""
        if timed_out:
            return Move.DONE, []
        move, asked = Move.START, []
        while move == Move.START and len(asked) < self.strategy.room:
            # Say nothing of waiting while the worker has trials of its own to run.
            quiet = bool(asked) or len(self.strategy) > 0
            move, finished, trial = self.retrying(partial(self._ask_one, quiet=quiet),
                                                  "starting a trial")
            self.progress.update(finished - self.progress.n)
            if move == Move.START:
                self.waited_for = ()
                asked.append(trial)
        return move, asked

    def _record(self, outcomes: list[Outcome]) -> None:
        """Count trials' ends, every one already told; then stop on too many failures in a
        row, checked once for them all."""
        self._count(outcomes)
        if self.trials.failures_in_a_row >= self.spec.max_failures_in_a_row:
            raise HpoError(
                f"{self.trials.failures_in_a_row} trials in a row failed, the last "
                f"with {self.trials.last_reason}; fix the objective (run with "
                "--debug for the traceback), or raise max_failures_in_a_row in "
                "the study file"
            ) from self.trials.last_error

    def _count(self, outcomes: list[Outcome]) -> None:
        """Count trials' ends and show the best value on the progress bar."""
        pick_best = max if self.spec.direction == "maximize" else min
        for outcome in outcomes:
            self.outcomes[outcome.state.name] += 1
            if outcome.value is not None:
                self.best = (outcome.value if self.best is None
                             else pick_best(self.best, outcome.value))
        if self.best is not None:
            self.progress.set_postfix_str(f"best {self.spec.metric}={self.best:.6g}",
                                          refresh=False)

    def _ask_one(self, quiet: bool = False) -> tuple[Move, int, optuna.Trial | None]:
        """Under the study lock: reap, count, decide; claim and ask a trial if starting.
        `quiet`: say nothing of waiting (the worker has trials of its own to train)."""
        study = self.study
        if not self.lock.acquire():
            return Move.DONE, 0, None  # a signal came while waiting for the lock
        try:
            if self.reaper is not None and self.reaper.due:
                self.reaper.reap()  # a dead worker's trial frees its slot
            counts = budget.count_by_state(study, self.lock.connection)
            finished = budget.finished_count(counts, self.carried)
            if study.claimed is not None:  # claimed before the database went away
                move = Move.START
            else:
                grid_left = (budget.grid_points_left(study, self.grid_size)
                             if self.grid_size else None)
                move = budget.next_move(counts, self.budget, grid_left,
                                        heartbeats=bool(self.spec.heartbeat),
                                        carried=self.carried)
            if move == Move.WAIT:
                if not quiet:
                    self._say_what_it_waits_for(counts)
                return move, finished, None
            if move == Move.DONE:
                return move, finished, None
            claimed = study.claim(pop_waiting=counts[optuna.trial.TrialState.WAITING] > 0)
            if self.spec.heartbeat and self.backend is not None:
                # The first beat, stamped by the database's clock, before the lock is let go.
                self.backend.record_heartbeat(claimed)
            return move, finished, study.ask_claimed()
        finally:
            self.lock.release()

    def _say_what_it_waits_for(self, counts: dict) -> None:
        running = counts[optuna.trial.TrialState.RUNNING]
        if running == len(self.waited_for):
            return
        trials = budget.running_trials(self.study)
        numbers = tuple(t.number for t in trials)
        if numbers and numbers != self.waited_for:
            grace = self.spec.heartbeat.grace if self.spec.heartbeat else None
            # A local launcher's worker waiting for its siblings is the normal end of a run,
            # which the launcher's progress bar shows; waiting for other machines is news.
            siblings = LOCAL_WORKERS_ENV in os.environ and all(
                t.user_attrs.get("worker_host", self.trials.host) == self.trials.host
                for t in trials)
            logger.log(logging.DEBUG if siblings else logging.INFO, "%s",
                       budget.describe_wait(trials, grace))
        self.waited_for = numbers
