"""Contract tests: each Optuna / optuna-dashboard internal hpo relies on, on every backend.

If one of these fails after an upgrade, the internal changed: mend `hpo/store/optuna_compat.py`
and widen `SUPPORTED_VERSIONS`, or keep the upper bound.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import optuna
import optuna_dashboard
import pytest
from optuna.trial import TrialState

from hpo.errors import HpoError, StorageError
from hpo.store import optuna_compat as compat
from hpo.store.locking import StudyLock
from hpo.store.optuna_compat import ClaimingStudy
from hpo.store.retry import connection_error
from hpo.store.storage import dispose, open_storage
from tests.conftest import wait_until

X = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}


def test_versions_in_range_pass_and_others_are_one_line(monkeypatch):
    compat.check_versions()
    monkeypatch.setattr(compat.metadata, "version", lambda package: "6.1.0")
    with pytest.raises(HpoError) as raised:
        compat.check_versions()
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("hpo relies on internals of optuna 5.0 up to (not including) 6")
    assert message.endswith("install 'optuna>=5.0,<6'")


def test_ids_storage_and_backend(claiming):
    trial = claiming.ask(X)
    storage = compat.study_storage(claiming)
    assert storage.get_trial(compat.trial_id(trial)).number == trial.number
    assert storage.get_study_id_from_name(claiming.study_name) == compat.study_id(claiming)
    backend = compat.rdb_backend(storage)
    assert isinstance(backend, optuna.storages.RDBStorage)
    # A study loaded by Optuna wraps the RDBStorage in a cache; the backend is found through it.
    loaded = optuna.load_study(study_name=claiming.study_name, storage=backend)
    assert compat.rdb_backend(compat.study_storage(loaded)) is backend
    assert compat.rdb_backend(optuna.storages.InMemoryStorage()) is None


def test_system_attrs_at_start_show_a_retry_link(claiming):
    claiming.add_trial(optuna.create_trial(
        state=TrialState.WAITING, params={"x": 0.5}, distributions=X,
        system_attrs={"failed_trial": 7}))
    trial = claiming.ask()
    assert compat.system_attrs_at_start(trial)["failed_trial"] == 7


def test_routed_trial_writes_reach_the_stand_in(claiming):
    trial = claiming.ask(X)
    real = compat.study_storage(claiming)
    written = []

    class StandIn:
        def __getattr__(self, name):
            return getattr(real, name)

        def set_trial_intermediate_value(self, trial_id, step, value):
            written.append(("report", trial_id, step, value))

        def set_trial_user_attr(self, trial_id, key, value):
            written.append(("attr", trial_id, key, value))

    compat.route_trial_writes(trial, StandIn())
    trial.report(0.25, 3)
    trial.set_user_attr("k", "v")
    own = compat.trial_id(trial)
    assert written == [("report", own, 3, 0.25), ("attr", own, "k", "v")]
    assert real.get_trial(own).intermediate_values == {}


def test_others_count_the_claim_before_ask_and_ask_runs_it(claiming):
    backend = compat.rdb_backend(claiming._storage)
    lock = StudyLock(backend, claiming.study_name)
    assert lock.acquire()
    study_id = compat.study_id(claiming)
    assert compat.count_by_state(backend, study_id, lock.connection)[TrialState.RUNNING] == 0
    claimed = claiming.claim(pop_waiting=False)
    lock.release()
    assert compat.count_by_state(backend, study_id)[TrialState.RUNNING] == 1  # before ask

    released = []
    claiming.on_ask = lambda: released.append(True)
    trial = claiming.ask_claimed()
    assert compat.trial_id(trial) == claimed and claiming.claimed is None and released
    claiming.tell(trial, 0.5)
    assert [t.state for t in claiming.trials] == [TrialState.COMPLETE]
    assert compat.count_by_state(backend, study_id)[TrialState.COMPLETE] == 1


def test_a_claim_pops_a_queued_trial_with_its_params(claiming):
    claiming.enqueue_trial({"x": 0.25})
    claimed = claiming.claim(pop_waiting=True)
    assert claiming.trials[0]._trial_id == claimed
    assert claiming.trials[0].state == TrialState.RUNNING
    assert claiming.ask_claimed().suggest_float("x", 0.0, 1.0) == 0.25


def test_retrying_after_a_failure_keeps_the_claim(claiming):
    first = claiming.claim(pop_waiting=False)
    assert claiming.claim(pop_waiting=False) == first  # the database went away; try again
    assert len(claiming.trials) == 1


def test_without_a_claim_ask_is_optunas(claiming):
    claiming.enqueue_trial({"x": 0.75})
    assert claiming.ask(X).params == {"x": 0.75}
    assert claiming.ask(X).number == 1


def test_stale_trials_are_silent_past_grace_with_or_without_a_heartbeat(claiming):
    backend = compat.rdb_backend(claiming._storage)
    beaten = claiming.claim(pop_waiting=False)
    backend.record_heartbeat(beaten)
    claiming.claimed = None
    never_beat = claiming.claim(pop_waiting=False)  # an orphaned ask(): no heartbeat row
    claiming.claimed = None
    assert compat.stale_trial_ids(backend, compat.study_id(claiming), 2.0) == []
    wait_until(lambda: len(compat.stale_trial_ids(backend, compat.study_id(claiming), 2.0)) == 2,
               10, "both trials to be silent for over 2 s")
    fresh = claiming.claim(pop_waiting=False)
    backend.record_heartbeat(fresh)
    claiming.claimed = None
    finished = claiming.ask(X)
    claiming.tell(finished, 0.1)
    stale = compat.stale_trial_ids(backend, compat.study_id(claiming), 2.0)
    assert sorted(stale) == sorted([beaten, never_beat])


def test_the_dashboard_reads_the_note_hpo_saves(claiming):
    compat.dashboard_save_note()(claiming, "# note\nbody")
    assert optuna_dashboard.get_note(claiming) == "# note\nbody"


def test_a_claim_outlives_an_ask_that_lost_the_database(postgres_proxy):
    # Found in a full run: the connection dropped inside `ask`, after the claim was handed
    # over; the retry claimed a second trial and the first stayed RUNNING until reaped.
    url, proxy, proxied = postgres_proxy
    storage = open_storage(proxied)
    name = f"t-{uuid.uuid4().hex[:12]}"
    optuna.create_study(study_name=name, storage=storage)
    study = ClaimingStudy(study_name=name, storage=storage)
    try:
        claimed = study.claim(pop_waiting=False)
        proxy.cut()
        with pytest.raises(Exception) as lost:  # noqa: B017 (Optuna wraps it in its own)
            study.ask_claimed()  # reads the new trial back: the database is gone
        assert connection_error(lost.value) is not None  # what the runner retries on
        proxy.restore()
        assert study.claim(pop_waiting=False) == claimed  # the retry's claim is the same
        assert compat.trial_id(study.ask_claimed()) == claimed
        assert len(study.trials) == 1
    finally:
        dispose(storage)


def test_the_schema_head_read_from_the_scripts_is_alembics():
    from pathlib import Path

    import alembic.config
    import alembic.script
    import optuna.storages._rdb as rdb

    config = alembic.config.Config()
    config.set_main_option("script_location", str(Path(rdb.__file__).parent / "alembic"))
    head = alembic.script.ScriptDirectory.from_config(config).get_current_head()
    assert compat._schema_head() == head


def test_opening_a_stamped_database_does_not_import_alembic(storage_url):
    dispose(open_storage(storage_url))  # created and stamped, through alembic if new
    code = ("import sys; from hpo.store.storage import dispose, open_storage; "
            f"dispose(open_storage({storage_url!r})); print('alembic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_a_database_of_an_older_schema_is_still_refused(tmp_path):
    import sqlite3

    url = f"sqlite:///{tmp_path / 'old.db'}"
    dispose(open_storage(url))
    with sqlite3.connect(tmp_path / "old.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'v3.0.0.d'")
    with pytest.raises(StorageError, match="no longer compatible with the table schema"):
        open_storage(url)
