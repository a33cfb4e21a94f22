"""What a running trial writes: buffered reports and attributes, checked against divergence.

Optuna writes every `trial.report` and `trial.set_user_attr` in a transaction of its own. A
trial that reports per step would spend most of its bookkeeping time on those commits, so the
recorder stands in for the storage of one running trial: it keeps reports and user attributes
in memory and writes them together, at most every `flush_interval` seconds (so a dashboard
lags by no more than that) and once more when the trial ends, before its state is set. A
worker that dies loses only the unwritten reports of its own running trial, which is then a
failed trial anyway; a finished trial is always complete in storage.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import optuna

from hpo.signals import helper_thread
from hpo.store import optuna_compat as compat
from hpo.training.divergence import DivergenceMonitor

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

DEFAULT_FLUSH_INTERVAL = 1.0
logger = logging.getLogger("hpo")


class TrialRecorder:
    """The storage as one running trial sees it (set as `trial.storage`).

    Calls about other trials, and every read, go straight to the real storage.
    """

    def __init__(
        self,
        storage: BaseStorage,
        trial_id: int,
        monitor: DivergenceMonitor | None,
        reports_are_costs: bool,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    ) -> None:
        self._storage = storage
        self._trial_id = trial_id
        self._monitor = monitor
        self._reports_are_costs = reports_are_costs
        self._flush_interval = flush_interval
        self._last_flush = time.monotonic()
        self._values: dict[int, float] = {}
        self._attrs: dict[str, Any] = {}
        self._backend = compat.rdb_backend(storage)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self.prune_reason: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def set_trial_intermediate_value(self, trial_id: int, step: int, value: float) -> None:
        if trial_id != self._trial_id:
            self._storage.set_trial_intermediate_value(trial_id, step, value)
            return
        with self._lock:
            self._values[step] = value
        if self._reports_are_costs:
            self.check_cost(value, step)
        self._flush_if_due()

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        if trial_id != self._trial_id:
            self._storage.set_trial_user_attr(trial_id, key, value)
            return
        with self._lock:
            self._attrs[key] = value
        self._flush_if_due()

    def set_attrs(self, attrs: dict[str, Any]) -> None:
        """Buffer several user attributes of the trial at once."""
        with self._lock:
            self._attrs.update(attrs)

    def start(self) -> None:
        """Flush in the background too, so a trial that never reports still shows its worker."""
        self._flusher = helper_thread(self._flush_periodically,
                                      name=f"hpo-recorder-{self._trial_id}")

    def close(self) -> None:
        """Stop background flushing; call `flush` after it for the last rows."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()

    def _flush_periodically(self) -> None:
        while not self._stop.wait(self._flush_interval):
            try:
                self.flush()
            except Exception as e:  # the final flush in the trial's own thread reports it
                logger.debug("background flush of trial %d failed: %s", self._trial_id, e)

    def check_cost(self, cost: float, step: int) -> None:
        """Apply the divergence rule; a diverged cost stops the trial as pruned, right here."""
        if self._monitor is None or self.prune_reason is not None:
            return
        reason = self._monitor.check(cost, step)
        if reason is not None:
            self.prune_reason = reason
            raise optuna.TrialPruned(reason)

    def _flush_if_due(self) -> None:
        # In the objective's own thread: a failed write must not fail the objective. The rows
        # stay buffered, and the flush when the trial ends is retried.
        if time.monotonic() - self._last_flush >= self._flush_interval:
            try:
                self.flush()
            except Exception as e:
                self._last_flush = time.monotonic()
                logger.debug("flush of trial id %d failed: %s", self._trial_id, e)

    def flush(self) -> None:
        """Write every buffered report and attribute of the trial, in one transaction.

        What fails to be written stays buffered for the next flush. Writing is idempotent, so
        a flush whose commit was lost in a dropped connection can simply be repeated.
        """
        with self._lock:
            if self._values or self._attrs:
                self._write(self._values, self._attrs)
                self._values, self._attrs = {}, {}
            self._last_flush = time.monotonic()

    def _write(self, values: dict[int, float], attrs: dict[str, Any]) -> None:
        if self._backend is not None:
            compat.write_trial_rows(self._backend, self._trial_id, values, attrs)
            return
        for step, value in values.items():  # in-memory storage: nothing to batch
            self._storage.set_trial_intermediate_value(self._trial_id, step, value)
        for key, value in attrs.items():
            self._storage.set_trial_user_attr(self._trial_id, key, value)


def report_cost(trial: optuna.Trial, cost: float, step: int) -> None:
    """Report a training cost for hpo's divergence rule, separate from `trial.report`.

    For objectives in studies that maximize, whose reported values are not costs. Raises
    `optuna.TrialPruned` when the cost diverged. Outside `hpo run` it does nothing, so the same
    objective still runs under plain Optuna.
    """
    recorder = trial.storage
    if isinstance(recorder, TrialRecorder):
        recorder.check_cost(float(cost), int(step))
