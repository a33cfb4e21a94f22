"""Heartbeats that survive database errors, and reaping silent trials, on real databases."""

from __future__ import annotations

import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import create_engine, text

from hpo.spec import HeartbeatSpec
from hpo.store.heartbeat import Heartbeat, Reaper
from hpo.store.optuna_compat import rdb_backend, stale_trial_ids, study_id
from hpo.store.storage import dispose, open_storage
from tests.conftest import wait_until

X = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}


@pytest.fixture
def study(claiming):
    return claiming


def orphan(study, x=0.5):
    """A RUNNING trial nobody beats for, as a notebook's `study.ask()` leaves."""
    trial = study.ask(X)
    trial.set_user_attr("worker_host", "gone")
    trial.set_user_attr("worker_pid", 1)
    return trial


def test_a_trial_that_never_beat_is_failed_after_grace_and_retried(study, caplog):
    trial = orphan(study)
    reaper = Reaper(study, HeartbeatSpec(interval=1, grace=2, max_retries=1))
    reaper._connected_since -= 10  # this worker has had the database all along
    assert reaper.reap() == []  # not silent for 2 s yet
    with caplog.at_level("WARNING", logger="hpo"):
        assert wait_until(reaper.reap, 10, "the silent trial to be reaped") == [trial.number]
    trials = study.trials
    failed = trials[trial.number]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"] == (
        "its worker (gone:1) sent no heartbeat for over 2 s")
    [retry] = [t for t in trials if t.state == TrialState.WAITING]
    assert retry.params == failed.params
    assert retry.system_attrs["failed_trial"] == trial.number
    assert "fail_reason" not in retry.user_attrs
    assert caplog.messages == [f"failed trial {trial.number}: its worker (gone:1) sent no "
                               "heartbeat for over 2 s; queued a retry with the same parameters"]


def test_no_reaping_until_grace_has_passed_since_the_database_came_back(study):
    orphan(study)
    backend = rdb_backend(study._storage)
    wait_until(lambda: stale_trial_ids(backend, study_id(study), 2), 10,
               "the orphan to be silent for over 2 s")
    reaper = Reaper(study, HeartbeatSpec(interval=1, grace=2, max_retries=1))
    reaper._connected_since -= 10
    reaper.connection_lost()  # the last failed attempt; backoff waits on while it is away
    # The time that passes here is what is under test: longer than grace, and the clock must
    # not start at the failure.
    time.sleep(2.2)
    assert reaper.reap() == []  # the first look that reaches it: others may not have beaten
    assert len(wait_until(reaper.reap, 10, "the reaping, grace after that look")) == 1


def test_the_last_retry_is_not_retried_again(study):
    trial = orphan(study)
    reaper = Reaper(study, HeartbeatSpec(interval=1, grace=2, max_retries=0))
    reaper._connected_since -= 10
    assert wait_until(reaper.reap, 10, "the silent trial to be reaped") == [trial.number]
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def test_a_live_trials_heartbeat_keeps_it_from_being_reaped(study):
    trial = orphan(study)
    backend = rdb_backend(study._storage)
    backend.record_heartbeat(trial._trial_id)
    reaper = Reaper(study, HeartbeatSpec(interval=1, grace=2, max_retries=1))
    reaper._connected_since -= 10
    with Heartbeat(backend, trial._trial_id, interval=1):
        time.sleep(3.5)  # what is under test: longer than grace, with beats all along
        assert reaper.reap() == []
    assert study.trials[0].state == TrialState.RUNNING


def test_heartbeats_go_on_after_the_database_was_unreachable(postgres_proxy):
    # Optuna's own heartbeat thread stops for good at its first failed write, after which
    # other workers fail the still-running trial. hpo's beats again at the next interval.
    url, proxy, proxied = postgres_proxy
    storage = open_storage(proxied)
    name = f"t-beat-{uuid.uuid4().hex[:12]}"
    optuna.create_study(study_name=name, storage=storage)
    study = optuna.load_study(study_name=name, storage=storage)
    trial = study.ask(X)
    direct = create_engine(url)

    def last_beat():
        with direct.connect() as c:
            return c.execute(text("SELECT heartbeat FROM trial_heartbeats WHERE trial_id = :i"),
                             {"i": trial._trial_id}).scalar()

    try:
        with Heartbeat(rdb_backend(storage), trial._trial_id, interval=1) as beating:
            first = wait_until(last_beat, 10, "the first heartbeat")
            proxy.cut()
            wait_until(lambda: beating.failures >= 1, 10, "a heartbeat to fail")
            assert last_beat() == first
            proxy.restore()
            wait_until(lambda: last_beat() > first, 10, "a heartbeat after the outage")
    finally:
        direct.dispose()
        dispose(storage)
