"""One worker: create or load the study, run trials until the study's budget is met."""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.samplers import GridSampler
from optuna.trial import TrialState

from hpo.errors import HpoError, StorageError
from hpo.objective import Objective, build_objective
from hpo.pruners import CompositePruner, DivergenceMonitor, make_pruner
from hpo.recorder import TrialRecorder
from hpo.samplers import make_sampler
from hpo.storage import count_trials, mask_url, open_storage, resolve_storage_url

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from hpo.spec import StudySpec

logger = logging.getLogger("hpo")

SPEC_ATTR = "hpo_spec"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# A run whose trials keep raising is most likely a bug in the objective, not bad luck.
MAX_FAILURES_IN_A_ROW = 5
SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


@dataclass
class RunOptions:
    storage: str | None = None
    n_trials: int | None = None
    timeout: float | None = None
    quiet: bool = False


@dataclass
class RunResult:
    study: optuna.Study
    storage_url: str  # masked
    trials_run: int
    seconds: float
    stopped_by: signal.Signals | None = None
    extra: dict[str, Any] = field(default_factory=dict)

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
    spec: StudySpec, storage: BaseStorage, url: str, pruner: CompositePruner
) -> optuna.Study:
    """The spec's study, created on first run; a study made from another spec is refused."""
    sampler = make_sampler(spec)
    try:
        study = optuna.load_study(
            study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner
        )
    except KeyError:
        study = optuna.create_study(
            study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner,
            direction=spec.direction, load_if_exists=True,
        )
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None and study.trials:
        raise StorageError(
            f"study {spec.name!r} in {mask_url(url)} exists but was not created by hpo; "
            "choose another `name:` in the study file"
        )
    if stored is None:
        study.set_user_attr(SPEC_ATTR, spec.identity())
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


class _TrialRun:
    """Wraps the objective: records the trial's worker, duration and why it stopped."""

    def __init__(
        self, spec: StudySpec, objective: Objective, pruner: CompositePruner,
        signals: _StopSignals,
    ) -> None:
        self.spec = spec
        self.objective = objective
        self.pruner = pruner
        self.signals = signals
        self.worker = {"worker_host": socket.gethostname(), "worker_pid": os.getpid()}
        self.failures_in_a_row = 0
        self.last_error: BaseException | None = None
        self.values: list[float] = []

    def __call__(self, trial: optuna.Trial) -> float:
        divergence = self.spec.pruner.divergence
        recorder = TrialRecorder(
            trial.storage, trial._trial_id,
            DivergenceMonitor(divergence.factor) if divergence else None,
            reports_are_costs=self.spec.direction == "minimize",
        )
        trial.storage = recorder
        recorder.set_attrs(self.worker)
        started = time.perf_counter()
        outcome: dict[str, Any] = {}
        try:
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


def _progress(spec: StudySpec, total: int | None, done: int, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=spec.name, unit="trial", disable=quiet,
                dynamic_ncols=True, leave=True)


def _best_value(study: optuna.Study) -> float | None:
    try:
        return study.best_value
    except ValueError:  # no completed trial yet
        return None


def run(spec: StudySpec, options: RunOptions) -> RunResult:
    """Run trials of the spec's study until it has `n_trials` finished ones.

    `n_trials` counts the whole study's COMPLETE and PRUNED trials, so a rerun resumes where
    the last one stopped. Validation and the objective's import happen before the storage is
    touched.
    """
    objective = build_objective(spec)
    url = resolve_storage_url(spec, options.storage)
    storage = open_storage(url)
    pruner = make_pruner(spec.pruner)
    study = create_or_load_study(spec, storage, url, pruner)

    budget = options.n_trials or spec.n_trials
    timeout = options.timeout or spec.timeout
    signals = _StopSignals()
    trial_run = _TrialRun(spec, objective, pruner, signals)
    started = time.perf_counter()
    trials_run = 0

    finished = count_trials(study, FINISHED)
    # The bar's best is the study's at start, then this worker's: reading the study's best
    # after every trial would cost a query per trial for a number on the screen.
    best = _best_value(study)
    pick_best = max if spec.direction == "maximize" else min
    progress = _progress(spec, budget, finished, options.quiet)
    with signals.installed(), progress:
        while signals.received is None:
            if budget is not None and finished >= budget:
                break
            if timeout is not None and time.perf_counter() - started >= timeout:
                break
            if isinstance(study.sampler, GridSampler) and study.sampler.is_exhausted(study):
                break
            try:
                study.optimize(trial_run, n_trials=1, catch=(Exception,))
            except KeyboardInterrupt:
                break  # the trial is already marked FAIL
            trials_run += 1
            if trial_run.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                error = trial_run.last_error
                raise HpoError(
                    f"{trial_run.failures_in_a_row} trials in a row failed, the last with "
                    f"{type(error).__name__}: {error}; fix the objective (run with --debug "
                    "for the traceback)"
                ) from error
            now_finished = count_trials(study, FINISHED)
            progress.update(now_finished - finished)
            finished = now_finished
            if trial_run.values:
                best = pick_best([trial_run.values[-1]] + ([best] if best is not None else []))
            if best is not None:
                progress.set_postfix_str(f"best {spec.metric}={best:.6g}", refresh=False)
    return RunResult(
        study=study, storage_url=mask_url(url), trials_run=trials_run,
        seconds=time.perf_counter() - started, stopped_by=signals.received,
    )
