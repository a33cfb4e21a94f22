"""Heartbeats of running trials, and reaping the trials whose worker has gone silent.

A worker beats for its running trial every `interval` seconds. A RUNNING trial silent for
more than `grace` seconds (or, never having beaten, started longer ago) belongs to a dead
worker: any other worker fails it and queues a retry with the same parameters, up to
`max_retries` times, so its budget slot frees up and no worker waits for it for ever.

Two things keep a live worker's trial from being reaped:
- The beating thread outlives database errors: a failed beat is tried again at the next
  interval (Optuna's own thread stops for good at its first failure).
- A worker reaps only once it has had the database for `grace` seconds on end, counted from
  its first successful look after a loss. After an outage every trial's last beat is old;
  the workers that ran them beat again within an interval of the database's return (a
  claimed trial is beaten again with each retried claim), before anyone reaps. So an outage
  up to the reconnect limit (`hpo.store.retry.RECONNECT_LIMIT_S`) costs no running trial.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from hpo.signals import helper_thread
from hpo.store import optuna_compat as compat

if TYPE_CHECKING:
    from optuna.storages import RDBStorage

    from hpo.spec import HeartbeatSpec

logger = logging.getLogger("hpo")


class Heartbeat:
    """Beats for one trial every `interval` seconds in a thread, while entered."""

    def __init__(self, backend: RDBStorage, trial_id: int, interval: float,
                 on_lost: Callable[[], None] = lambda: None) -> None:
        self._backend = backend
        self._trial_id = trial_id
        self._interval = interval
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._backend.record_heartbeat(self._trial_id)
            except Exception as e:
                self.failures += 1
                self._on_lost()
                logger.debug("heartbeat of trial id %d failed (%s); trying again in %s s",
                             self._trial_id, type(e).__name__, self._interval)

    def __enter__(self) -> Heartbeat:
        self._thread = helper_thread(self._beat, name=f"hpo-heartbeat-{self._trial_id}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        # A beat in flight during an outage can take the connect timeout (10 s); the worker
        # does not wait for it (a late beat of a finished trial changes nothing).
        if self._thread is not None:
            self._thread.join(timeout=1.0)


class Reaper:
    """Fails a study's silent trials and queues their retries; call it under the study lock."""

    def __init__(self, study: optuna.Study, heartbeat: HeartbeatSpec) -> None:
        self._study = study
        self._backend = compat.rdb_backend(compat.study_storage(study))
        self._spec = heartbeat
        self._connected_since: float | None = time.monotonic()
        self._last_reap = -float("inf")

    def connection_lost(self) -> None:
        """This worker lost the database: wait `grace` after its return before reaping."""
        self._connected_since = None

    @property
    def due(self) -> bool:
        """Whether an interval has passed since the last look (looking costs a query)."""
        return time.monotonic() - self._last_reap >= self._spec.interval

    def reap(self) -> list[int]:
        """Fail the silent trials, queue their retries; returns the failed trials' numbers."""
        now = time.monotonic()
        if self._connected_since is None:
            # The first look since the database came back (this runs under the study lock, so
            # it answers): the clock starts now, not at the last failed attempt, which with
            # backoff can be seconds before the outage ended.
            self._connected_since = now
        if self._backend is None or now - self._connected_since < self._spec.grace:
            return []
        self._last_reap = now
        storage = compat.study_storage(self._study)
        reaped = []
        for trial_id in compat.stale_trial_ids(self._backend, compat.study_id(self._study),
                                               self._spec.grace):
            trial = storage.get_trial(trial_id)
            reason = (f"its worker ({_worker(trial)}) sent no heartbeat for over "
                      f"{self._spec.grace} s")
            try:
                storage.set_trial_user_attr(trial_id, "fail_reason", reason)
                if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # it finished, or another worker reaped it first
            queued = queue_retry(self._study, trial, self._spec.max_retries)
            logger.warning("failed trial %d: %s; %s", trial.number, reason,
                           "queued a retry with the same parameters" if queued
                           else "no retry left")
            reaped.append(trial.number)
        return reaped


def queue_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial, max_retries: int) -> bool:
    """Queue a re-run of a failed trial with its parameters, unless it used up its retries.

    The re-run links to the first trial of the chain (`failed_trial` system attr); it copies
    the user attrs, less the failed trial's `fail_reason`.
    """
    tries = len(trial.system_attrs.get("retry_history", []))
    if tries >= max_retries:
        return False
    trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k != "fail_reason"}
    with warnings.catch_warnings():  # "experimental" in Optuna: hpo's choice, not news
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retries)
    retry(study, trial)
    return True


def _worker(trial: optuna.trial.FrozenTrial) -> str:
    host, pid = trial.user_attrs.get("worker_host"), trial.user_attrs.get("worker_pid")
    return f"{host}:{pid}" if host else "unknown worker"
