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

from hpo.divergence import DivergenceMonitor
from hpo.storage import rdb_backend

if TYPE_CHECKING:
    from optuna.storages import BaseStorage, RDBStorage

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
        stored_keys: set[str] | None = None,
    ) -> None:
        self._storage = storage
        self._trial_id = trial_id
        self._monitor = monitor
        self._reports_are_costs = reports_are_costs
        self._flush_interval = flush_interval
        self._last_flush = time.monotonic()
        self._values: dict[int, float] = {}
        self._attrs: dict[str, Any] = {}
        # User attrs already in storage (a retried or enqueued trial starts with some): a
        # second write of one replaces it.
        self._written_keys: set[str] = set(stored_keys or ())
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
        self._flusher = threading.Thread(target=self._flush_periodically, daemon=True,
                                         name=f"hpo-recorder-{self._trial_id}")
        self._flusher.start()

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
        if time.monotonic() - self._last_flush >= self._flush_interval:
            self.flush()

    def flush(self) -> None:
        """Write every buffered report and attribute of the trial."""
        with self._lock:
            if self._values or self._attrs:
                rewritten = self._written_keys.intersection(self._attrs)
                write_trial_rows(self._storage, self._trial_id, self._values, self._attrs,
                                 rewritten)
                self._written_keys.update(self._attrs)
                self._values, self._attrs = {}, {}
            self._last_flush = time.monotonic()


def report_cost(trial: optuna.Trial, cost: float, step: int) -> None:
    """Report a training cost for hpo's divergence rule, separate from `trial.report`.

    For objectives in studies that maximize, whose reported values are not costs. Raises
    `optuna.TrialPruned` when the cost diverged. Outside `hpo run` it does nothing, so the same
    objective still runs under plain Optuna.
    """
    recorder = trial.storage
    if isinstance(recorder, TrialRecorder):
        recorder.check_cost(float(cost), int(step))


def write_trial_rows(
    storage: BaseStorage,
    trial_id: int,
    values: dict[int, float],
    attrs: dict[str, Any],
    rewritten: frozenset[str] | set[str] = frozenset(),
) -> None:
    """Write a running trial's intermediate values and user attributes in one transaction.

    Steps are new by construction (`Trial.report` ignores a step reported twice); attributes
    named in `rewritten` are already stored and are replaced.
    """
    backend = rdb_backend(storage)
    if backend is None:
        for step, value in values.items():
            storage.set_trial_intermediate_value(trial_id, step, value)
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        return
    _write_rdb_rows(backend, trial_id, values, attrs, rewritten)


def _write_rdb_rows(
    backend: RDBStorage,
    trial_id: int,
    values: dict[int, float],
    attrs: dict[str, Any],
    rewritten: set[str],
) -> None:
    import json

    from optuna.storages._rdb import models
    from sqlalchemy import delete, insert, select
    from sqlalchemy.orm import Session

    value_rows = []
    for step, value in values.items():
        stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
        value_rows.append({
            "trial_id": trial_id, "step": step,
            "intermediate_value": stored, "intermediate_value_type": kind,
        })
    attr_model = models.TrialUserAttributeModel
    with Session(backend.engine) as session, session.begin():
        state = session.execute(
            select(models.TrialModel.state)
            .where(models.TrialModel.trial_id == trial_id)
            .with_for_update()
        ).scalar_one()
        if state.is_finished():
            raise optuna.exceptions.UpdateFinishedTrialError(
                f"Trial#{trial_id} has already finished and can not be updated."
            )
        if value_rows:
            session.execute(insert(models.TrialIntermediateValueModel), value_rows)
        if rewritten:
            session.execute(
                delete(attr_model)
                .where(attr_model.trial_id == trial_id, attr_model.key.in_(list(rewritten)))
            )
        if attrs:
            session.execute(insert(attr_model), [
                {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                for key, value in attrs.items()
            ])
