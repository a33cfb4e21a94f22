"""Claiming a trial under the study lock, then running it with Optuna's ask, on every backend."""

from __future__ import annotations

import threading
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from hpo.claiming import ClaimingStudy
from hpo.locking import StudyLock
from hpo.spec import HeartbeatSpec
from hpo.storage import count_by_state, open_storage, rdb_backend

X = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}


@pytest.fixture
def claiming(storage_url):
    """A new ClaimingStudy on the backend, with one-second heartbeats."""
    storage = open_storage(storage_url, HeartbeatSpec(interval=1, grace=2, max_retries=1))
    name = f"t-claim-{uuid.uuid4().hex[:12]}"
    optuna.create_study(study_name=name, storage=storage)
    yield ClaimingStudy(study_name=name, storage=storage)
    rdb_backend(storage).engine.dispose()


def test_others_count_the_claim_before_ask_and_ask_runs_it(claiming):
    lock = StudyLock(rdb_backend(claiming._storage), claiming.study_name)
    lock.acquire()
    assert count_by_state(claiming, lock.connection)[TrialState.RUNNING] == 0
    claimed = claiming.claim(pop_waiting=False)
    lock.release()
    assert count_by_state(claiming)[TrialState.RUNNING] == 1  # budget-exact without ask

    trial = claiming.ask(X)
    assert trial._trial_id == claimed and claiming.claimed is None
    claiming.tell(trial, 0.5)
    assert [t.state for t in claiming.trials] == [TrialState.COMPLETE]


def test_a_claim_pops_a_queued_trial_with_its_params(claiming):
    claiming.enqueue_trial({"x": 0.25})
    claimed = claiming.claim(pop_waiting=True)
    assert claiming.trials[0]._trial_id == claimed
    assert claiming.trials[0].state == TrialState.RUNNING
    assert claiming.ask(X).params == {"x": 0.25}


def test_retrying_after_a_failure_keeps_the_claim(claiming):
    first = claiming.claim(pop_waiting=False)
    assert claiming.claim(pop_waiting=False) == first  # the database went away; try again
    assert len(claiming.trials) == 1


def test_without_a_claim_ask_is_optunas(claiming):
    claiming.enqueue_trial({"x": 0.75})
    assert claiming.ask(X).params == {"x": 0.75}
    assert claiming.ask(X).number == 1


def test_an_abandoned_claim_is_failed_and_queued_again_after_grace(claiming):
    beaten = claiming.claim(pop_waiting=False)
    claiming.beat_for_claim()
    claiming.claimed = None  # the worker died before `ask`
    silent = claiming.claim(pop_waiting=False)  # ...and this one before its first beat
    time.sleep(3.5)  # past the two-second grace
    optuna.storages.fail_stale_trials(claiming)
    states = {t._trial_id: t.state for t in claiming.trials}
    assert states[beaten] == TrialState.FAIL
    # Optuna never fails a trial that has no heartbeat: hence the beat at claim time.
    assert states[silent] == TrialState.RUNNING
    retries = [t for t in claiming.trials if t.state == TrialState.WAITING]
    assert [t.system_attrs["failed_trial"] for t in retries] == [0]


def test_the_study_lock_keeps_a_second_holder_out_until_released(claiming):
    backend = rdb_backend(claiming._storage)
    holder, other = StudyLock(backend, claiming.study_name), StudyLock(backend, "x")
    waiter = StudyLock(backend, claiming.study_name)
    holder.acquire()
    if backend.engine.dialect.name != "sqlite":  # SQLite's is one file lock per database
        other.acquire()  # another study's lock is another lock
        other.release()
    got = threading.Event()

    def wait_for_lock() -> None:
        waiter.acquire()
        got.set()
        waiter.release()

    thread = threading.Thread(target=wait_for_lock)
    thread.start()
    assert not got.wait(1.0)
    holder.release()
    assert got.wait(30)
    thread.join()
