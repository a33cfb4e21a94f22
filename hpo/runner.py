"""One worker: create or load the study, run trials until the study's budget is met."""

from __future__ import annotations

import enum
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from hpo import space
from hpo.claiming import ClaimingStudy
from hpo.errors import HpoError, StorageError
from hpo.locking import StudyLock
from hpo.objective import Objective, build_objective
from hpo.pruners import CompositePruner, DivergenceMonitor, make_pruner
from hpo.recorder import TrialRecorder
from hpo.samplers import make_sampler
from hpo.storage import (
    count_by_state,
    finished_count,
    mask_url,
    open_storage,
    rdb_backend,
    resolve_storage_url,
    scrub,
)

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from hpo.spec import StudySpec

logger = logging.getLogger("hpo")

SPEC_ATTR = "hpo_spec"
# A run whose trials keep raising is most likely a bug in the objective, not bad luck.
MAX_FAILURES_IN_A_ROW = 5
SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
# How often a worker whose budget is taken by others' running trials looks again.
WAIT_POLL_S = 0.5
# How long a worker keeps retrying an unreachable database before it gives up.
RECONNECT_LIMIT_S = 120.0


@dataclass
class RunOptions:
    storage: str | None = None
    n_trials: int | None = None
    timeout: float | None = None
    quiet: bool = False
    worker_id: str = ""  # distinct per worker: seeds its sampler, recorded on its trials
    # Refresh the study's dashboard note at the end; `--workers` leaves it to the launcher.
    write_note: bool = True


@dataclass
class RunResult:
    study: optuna.Study
    storage_url: str  # masked
    trials_run: int
    seconds: float
    summary: dict[str, Any]  # report.summarize(study) at the end, for the note and the screen
    stopped_by: signal.Signals | None = None

    @property
    def exit_code(self) -> int:
        return SIGNAL_EXIT_CODES.get(self.stopped_by, 0) if self.stopped_by else 0


def first_difference(stored: Any, current: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first field (dotted path) where two normalized specs differ, with both values."""
    if isinstance(stored, dict) and isinstance(current, dict):
        for key in list(stored) + [k for k in current if k not in stored]:
            found = first_difference(
                stored.get(key), current.get(key), f"{path}.{key}" if path else key
            )
            if found:
                return found
        return None
    return None if stored == current else (path, stored, current)


def create_or_load_study(
    spec: StudySpec, storage: BaseStorage, url: str, pruner: CompositePruner | None = None,
    worker_id: str = "",
) -> ClaimingStudy:
    """The spec's study, created on first run; a study made from another spec is refused."""
    def open_study() -> ClaimingStudy:
        return ClaimingStudy(study_name=spec.name, storage=storage,
                             sampler=make_sampler(spec, worker_id), pruner=pruner)

    try:
        study = open_study()
    except KeyError:  # the first worker: create it, then open it like any other
        optuna.create_study(study_name=spec.name, storage=storage, direction=spec.direction,
                            load_if_exists=True)
        study = open_study()
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None and study.trials:
        raise StorageError(
            f"study {spec.name!r} in {mask_url(url)} exists but was not created by hpo; "
            "choose another `name:` in the study file"
        )
    if stored is None:
        study.set_user_attr(SPEC_ATTR, spec.identity())
        study.set_metric_names([spec.metric])  # the dashboard shows it, not "Objective 0"
        return study
    difference = first_difference(stored, spec.identity())
    if difference:
        where, old, new = difference
        raise StorageError(
            f"study {spec.name!r} in {mask_url(url)} was created from a different spec: "
            f"{where} is {old!r} there but {new!r} in {spec.source.name}; to start a new study, "
            f"change `name:` in the file (or delete the old one: optuna delete-study "
            f"--study-name {spec.name} --storage URL)"
        )
    return study


class _StopSignals:
    """SIGINT/SIGTERM stop the run between trials, or interrupt the running objective.

    Outside the objective a signal only asks the loop to stop, so it never lands inside a
    storage write and leaves a trial RUNNING.
    """

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self.in_objective = False

    def _handle(self, signum: int, _frame: Any) -> None:
        self.received = signal.Signals(signum)
        if self.in_objective:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[_StopSignals]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in SIGNAL_EXIT_CODES}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    @contextmanager
    def objective_running(self) -> Iterator[None]:
        self.in_objective = True
        try:
            yield
        finally:
            self.in_objective = False


def _system_attrs(trial: optuna.Trial) -> dict[str, Any]:
    # Optuna read the new trial's system attrs when it created it; asking the storage again
    # would cost every trial a query. Fall back to asking if that cache ever goes away.
    cached = getattr(trial, "_cached_frozen_trial", None)
    if cached is not None:
        return cached.system_attrs
    return trial.storage.get_trial_system_attrs(trial._trial_id)


class _TrialRun:
    """Wraps the objective: records the trial's worker, duration and why it stopped."""

    def __init__(
        self, spec: StudySpec, objective: Objective, pruner: CompositePruner,
        signals: _StopSignals, on_start: Any = None, worker_id: str = "",
    ) -> None:
        self.spec = spec
        self.objective = objective
        self.pruner = pruner
        self.signals = signals
        self.on_start = on_start  # releases a grid study's lock once its point is picked
        self.worker = {"worker_host": socket.gethostname(), "worker_pid": os.getpid()}
        if worker_id:
            self.worker["worker_id"] = worker_id
        self.failures_in_a_row = 0
        self.last_error: BaseException | None = None
        self.values: list[float] = []

    def __call__(self, trial: optuna.Trial) -> float:
        if self.on_start is not None:
            self.on_start()
        divergence = self.spec.pruner.divergence
        recorder = TrialRecorder(
            trial.storage, trial._trial_id,
            DivergenceMonitor(divergence.factor) if divergence else None,
            reports_are_costs=self.spec.direction == "minimize",
            stored_keys=set(trial.user_attrs),
        )
        trial.storage = recorder
        started = time.perf_counter()
        outcome: dict[str, Any] = {}
        try:
            recorder.set_attrs(self.worker)
            if self.spec.heartbeat:  # only heartbeats re-run a dead worker's trial
                link = _system_attrs(trial).get("failed_trial")
                if link is not None:
                    recorder.set_attrs({"retry_of": link})
            recorder.start()
            with self.signals.objective_running():
                value = self.objective(trial)
            value = self._check_value(value)
            self.failures_in_a_row = 0
            self.values.append(value)
            return value
        except optuna.TrialPruned as e:
            outcome["prune_reason"] = (
                recorder.prune_reason or self.pruner.reasons.pop(trial.number, None)
                or str(e) or "pruned by the objective"
            )
            self.failures_in_a_row = 0
            raise
        except KeyboardInterrupt:
            outcome["fail_reason"] = "interrupted by a signal"
            raise
        except Exception as e:
            outcome["fail_reason"] = f"{type(e).__name__}: {e}"
            self.failures_in_a_row += 1
            self.last_error = e
            logger.warning("trial %d failed: %s", trial.number, outcome["fail_reason"],
                           exc_info=logger.isEnabledFor(logging.DEBUG))
            raise
        finally:
            outcome["duration_s"] = round(time.perf_counter() - started, 6)
            recorder.close()
            recorder.set_attrs(outcome)
            recorder.flush()

    @staticmethod
    def _check_value(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"the objective returned {value!r}, not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"the objective returned {number}, not a finite number")
        return number


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


class _Move(enum.Enum):
    START = "start"  # start (or resume a queued retry of) a trial
    WAIT = "wait"  # the budget is taken by running trials; wait for them
    DONE = "done"


def next_move(counts: dict[TrialState, int], budget: int | None,
              grid_left: int | None, heartbeats: bool = True) -> _Move:
    """What a worker does next, given the study's trial counts (taken under the study lock).

    The budget counts finished trials and reserves running ones, so no number of workers
    overshoots it; a queued retry of a dead worker's trial is always started. Without
    heartbeats a dead worker's trial would stay RUNNING forever, so running trials reserve
    nothing and nobody waits for them (several workers may then overshoot).
    """
    finished = finished_count(counts)
    running = counts[TrialState.RUNNING] if heartbeats else 0
    if budget is not None and finished >= budget:
        # Anything still running now is a dead worker's trial: wait until it is failed.
        return _Move.WAIT if running else _Move.DONE
    if counts[TrialState.WAITING]:
        return _Move.START
    if grid_left is not None and grid_left <= 0:
        return _Move.WAIT if running else _Move.DONE
    if budget is not None and finished + running >= budget:
        return _Move.WAIT
    return _Move.START


def _grid_points_left(study: optuna.Study, size: int) -> int:
    started = {t.system_attrs.get("grid_id") for t in study.get_trials(deepcopy=False)
               if t.state != TrialState.WAITING}
    return size - len(started - {None})


def _database_error(error: BaseException) -> BaseException | None:
    """The deepest database error behind `error`, if one is in its chain of causes.

    Optuna 5.0 can hide one: when `tell` fails because the database is gone, its cleanup
    fails too and raises UnboundLocalError from the original error.
    """
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    kinds = (OperationalError, InterfaceError, DBAPIError,
             optuna.exceptions.StorageInternalError, TimeoutError)
    found, seen = None, set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kinds):
            found = error  # keep going: the deepest one says what actually happened
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return found


class _Reconnecting:
    """Retries a step while the database is unreachable, with backoff, for a bounded time."""

    def __init__(self, url: str, limit: float = RECONNECT_LIMIT_S) -> None:
        self.url = url
        self.limit = limit

    def __call__(self, step: Any) -> Any:
        delay, failing_since = 0.5, None
        while True:
            try:
                return step()
            except Exception as raised:
                e = _database_error(raised)
                if e is None:
                    raise
                now = time.monotonic()
                failing_since = failing_since or now
                detail = scrub(str(e).splitlines()[0] if str(e) else type(e).__name__, self.url)
                if now - failing_since > self.limit:
                    raise HpoError(
                        f"lost the database {mask_url(self.url)} for {self.limit:.0f} s "
                        f"({detail}); finished trials are stored, run `hpo run` again to "
                        "resume"
                    ) from None
                logger.warning("database unreachable (%s); retrying in %.1f s", detail, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)


def run(spec: StudySpec, options: RunOptions) -> RunResult:
    """Run trials of the spec's study until it has `n_trials` finished ones.

    `n_trials` counts the whole study's COMPLETE and PRUNED trials, so a rerun resumes where
    the last one stopped and any number of workers share the budget exactly. When it returns
    normally no trial of the study is RUNNING. Validation and the objective's import happen
    before the storage is touched.
    """
    objective = build_objective(spec)
    url = resolve_storage_url(spec, options.storage)
    storage = open_storage(url, spec.heartbeat)
    pruner = make_pruner(spec.pruner)
    study = create_or_load_study(spec, storage, url, pruner, options.worker_id)

    budget = options.n_trials or spec.n_trials
    timeout = options.timeout or spec.timeout
    grid_size = space.grid_size(spec.search_space) if spec.sampler.type == "grid" else None
    signals = _StopSignals()
    lock = StudyLock(rdb_backend(storage), spec.name)
    # Others may count once `ask` takes up this worker's claim. The grid sampler picks its
    # point inside `ask`, so a grid study keeps the lock until the objective starts, or two
    # workers could pick the same point.
    if grid_size is None:
        study.on_ask, on_start = lock.release, None
    else:
        study.on_ask, on_start = None, lock.release
    trial_run = _TrialRun(spec, objective, pruner, signals, on_start, options.worker_id)
    reconnecting = _Reconnecting(url)
    started = time.perf_counter()
    trials_run = 0

    def step() -> tuple[_Move, int]:
        lock.acquire()
        try:
            counts = count_by_state(study, lock.connection)
            if study.claimed is not None:  # claimed before the database went away
                move = _Move.START
            else:
                grid_left = _grid_points_left(study, grid_size) if grid_size else None
                move = next_move(counts, budget, grid_left, heartbeats=bool(spec.heartbeat))
            if move == _Move.WAIT:
                optuna.storages.fail_stale_trials(study)  # a dead worker's trial frees its slot
            elif move == _Move.START:
                study.claim(pop_waiting=counts[TrialState.WAITING] > 0)
                if spec.heartbeat:
                    study.beat_for_claim()
                study.optimize(trial_run, n_trials=1, catch=(Exception,))
                if study.claimed is not None:
                    raise HpoError(f"Optuna {optuna.__version__}'s ask did not run the trial "
                                   "this worker claimed; install optuna>=5,<6")
            return move, finished_count(counts)
        finally:
            lock.release()

    finished = finished_count(count_by_state(study))
    # The bar's best is the study's at start, then this worker's: reading the study's best
    # after every trial would cost a query per trial for a number on the screen.
    best = _best_value(study)
    pick_best = max if spec.direction == "maximize" else min
    progress = progress_bar(spec, budget, finished, options.quiet)
    with signals.installed(), progress:
        while signals.received is None:
            if timeout is not None and time.perf_counter() - started >= timeout:
                break
            try:
                move, finished_before = reconnecting(step)
            except KeyboardInterrupt:
                break  # the trial is already marked FAIL
            progress.update(finished_before - progress.n)
            if move == _Move.DONE:
                break
            if move == _Move.WAIT:
                time.sleep(WAIT_POLL_S)
                continue
            trials_run += 1
            if trial_run.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                error = trial_run.last_error
                raise HpoError(
                    f"{trial_run.failures_in_a_row} trials in a row failed, the last with "
                    f"{type(error).__name__}: {error}; fix the objective (run with --debug "
                    "for the traceback)"
                ) from error
            if trial_run.values:
                best = pick_best([trial_run.values[-1]] + ([best] if best is not None else []))
            if best is not None:
                progress.set_postfix_str(f"best {spec.metric}={best:.6g}", refresh=False)
        counts = count_by_state(study)
        progress.update(finished_count(counts) - progress.n)
    from hpo import report

    summary = report.summarize(study)
    if options.write_note:
        write_study_note(study, spec, url, summary)
    return RunResult(
        study=study, storage_url=mask_url(url), trials_run=trials_run,
        seconds=time.perf_counter() - started, summary=summary, stopped_by=signals.received,
    )


def write_study_note(study: optuna.Study, spec: StudySpec, url: str,
                     summary: dict[str, Any]) -> None:
    """Refresh the study's dashboard note: the spec as run (passwords masked) and `summary`."""
    from hpo import report

    spec_data = spec.normalized()
    if spec_data.get("storage"):
        spec_data["storage"] = mask_url(spec_data["storage"])
    note = report.study_note(summary, spec_data, str(spec.source), mask_url(url))
    try:
        _dashboard_save_note()(study, note)
    except Exception as e:  # a note is a courtesy; workers racing to write it lose nothing
        logger.debug("could not save the study note: %s", e)


def _dashboard_save_note() -> Any:
    """`optuna_dashboard.save_note`, without importing the whole dashboard if it can.

    `import optuna_dashboard` loads its web app and, through Optuna's importance module,
    scikit-learn: a second of CPU at the end of every run, for one function that needs only
    Optuna. So its `_note` module is loaded on its own; should the package be laid out
    differently, it is imported the ordinary way.
    """
    import importlib.util
    import sys
    from pathlib import Path

    if "optuna_dashboard" in sys.modules:
        return sys.modules["optuna_dashboard"].save_note
    try:
        package = importlib.util.find_spec("optuna_dashboard")
        path = Path(next(iter(package.submodule_search_locations))) / "_note.py"
        found = importlib.util.spec_from_file_location("hpo._dashboard_note", path)
        module = importlib.util.module_from_spec(found)
        found.loader.exec_module(module)
        return module.save_note
    except Exception:  # any change of layout: the public way still works
        import optuna_dashboard

        return optuna_dashboard.save_note
