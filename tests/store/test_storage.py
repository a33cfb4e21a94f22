from __future__ import annotations

import sqlite3
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from hpo.errors import StorageError
from hpo.spec import load_spec
from hpo.store import optuna_compat
from hpo.store.budget import count_by_state
from hpo.store.recorder import TrialRecorder
from hpo.store.storage import (
    mask_url,
    open_storage,
    resolve_storage_url,
    scrub,
)
from tests.conftest import cli, study_yaml, write_study

STUDY = study_yaml(n_trials=2, space="x: {type: float, low: 0.0, high: 1.0}")


def test_resolution_order(tmp_path, monkeypatch):
    path = write_study(tmp_path, STUDY + "storage: sqlite:///from-file.db\n")
    spec = load_spec(path)
    assert resolve_storage_url(spec, "sqlite:///from-cli.db") == "sqlite:///from-cli.db"
    monkeypatch.setenv("HPO_STORAGE", "sqlite:///from-env.db")
    assert resolve_storage_url(spec) == "sqlite:///from-env.db"
    monkeypatch.delenv("HPO_STORAGE")
    # A relative SQLite path in the file is relative to the file, like its other paths.
    assert resolve_storage_url(spec) == f"sqlite:///{tmp_path}/from-file.db"
    spec = load_spec(write_study(tmp_path / "other", STUDY))
    assert resolve_storage_url(spec) == f"sqlite:///{tmp_path}/other/quad.db"


def test_env_storage_is_used_by_run(tmp_path, monkeypatch):
    path = write_study(tmp_path, STUDY)
    monkeypatch.setenv("HPO_STORAGE", f"sqlite:///{tmp_path}/elsewhere.db")
    assert cli("run", path, "-q").exit_code == 0
    assert not (tmp_path / "quad.db").exists()
    study = optuna.load_study(study_name="quad", storage=f"sqlite:///{tmp_path}/elsewhere.db")
    assert len(study.trials) == 2


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql+psycopg://hpo:s3cret@db:5432/hpo", "postgresql+psycopg://hpo:***@db:5432/hpo"),
    ("mysql+pymysql://root:p%40ss@127.0.0.1/test", "mysql+pymysql://root:***@127.0.0.1/test"),
    ("sqlite:///x.db", "sqlite:///x.db"),
])
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_scrub_removes_password_from_any_text():
    url = "postgresql+psycopg://hpo:s3cret@db/hpo"
    assert scrub("failed for s3cret at db", url) == "failed for *** at db"


def test_sqlite_is_opened_in_wal_mode(tmp_path):
    open_storage(f"sqlite:///{tmp_path}/w.db")
    with sqlite3.connect(tmp_path / "w.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unreachable_server_is_one_line_without_password():
    url = "postgresql+psycopg://hpo:s3cret@127.0.0.1:1/hpo?connect_timeout=2"
    with pytest.raises(StorageError) as raised:
        open_storage(url)
    message = str(raised.value)
    assert message.startswith("cannot open storage postgresql+psycopg://hpo:***@127.0.0.1:1/hpo")
    assert "s3cret" not in message and "\n" not in message


def test_run_with_bad_storage_prints_no_password(tmp_path):
    path = write_study(tmp_path, STUDY)
    url = "postgresql+psycopg://hpo:s3cret@127.0.0.1:1/hpo?connect_timeout=2"
    result = cli("run", path, "--storage", url)
    assert result.exit_code == 1
    assert "s3cret" not in result.output
    assert "Error: cannot open storage" in result.output


def test_status_of_missing_database(tmp_path):
    path = write_study(tmp_path, STUDY)
    result = cli("status", path)
    assert result.exit_code == 1
    assert "no study database at" in result.output
    assert not (tmp_path / "quad.db").exists()


# The recorder writes rows with its own SQL; check it on every backend.
def test_recorder_writes_reports_and_attrs_in_one_go(storage_url):
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, study_name=f"t-recorder-{uuid.uuid4().hex}")
    trial = study.ask()
    recorder = TrialRecorder(trial.storage, trial._trial_id, None, reports_are_costs=True,
                             flush_interval=3600)
    trial.storage = recorder
    for step in range(4):
        trial.report(float(step), step)
    trial.report(float("nan"), 4)
    trial.report(float("inf"), 5)
    trial.set_user_attr("note", "first")
    fresh = optuna.load_study(study_name=study.study_name, storage=storage_url)
    assert fresh.trials[0].intermediate_values == {}  # buffered, not yet written
    recorder.flush()
    trial.set_user_attr("note", "second")  # replaces the stored value
    recorder.set_attrs({"duration_s": 1.5})
    recorder.flush()
    study.tell(trial, 1.0)
    stored = optuna.load_study(study_name=study.study_name, storage=storage_url).trials[0]
    assert stored.state == TrialState.COMPLETE
    values = stored.intermediate_values
    assert [values[s] for s in range(4)] == [0.0, 1.0, 2.0, 3.0]
    assert values[4] != values[4] and values[5] == float("inf")
    assert stored.user_attrs == {"note": "second", "duration_s": 1.5}
    counts = count_by_state(study)
    assert counts[TrialState.COMPLETE] == 1
    assert counts[TrialState.RUNNING] == counts[TrialState.FAIL] == 0


def test_recorder_refuses_a_finished_trial(storage_url):
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, study_name=f"t-finished-{uuid.uuid4().hex}")
    trial = study.ask()
    recorder = TrialRecorder(trial.storage, trial._trial_id, None, True, flush_interval=3600)
    recorder.set_attrs({"late": True})
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        recorder.flush()


def test_writing_a_batch_twice_leaves_one_copy(storage_url):
    # A flush whose commit was lost with the connection is simply repeated.
    storage = open_storage(storage_url)
    study = optuna.create_study(storage=storage, study_name=f"t-twice-{uuid.uuid4().hex}")
    trial = study.ask()
    backend = optuna_compat.rdb_backend(storage)
    for _ in range(2):
        optuna_compat.write_trial_rows(backend, trial._trial_id, {0: 1.0, 1: 0.5}, {"k": 1})
    study.tell(trial, 0.5)
    stored = optuna.load_study(study_name=study.study_name, storage=storage_url).trials[0]
    assert stored.intermediate_values == {0: 1.0, 1: 0.5}
    assert stored.user_attrs == {"k": 1}


def test_recorder_flushes_on_interval(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/i.db")
    study = optuna.create_study(storage=storage, study_name="interval")
    trial = study.ask()
    trial.storage = TrialRecorder(trial.storage, trial._trial_id, None, True, flush_interval=0)
    trial.report(1.0, 0)
    visible = optuna.load_study(study_name="interval", storage=f"sqlite:///{tmp_path}/i.db")
    assert visible.trials[0].intermediate_values == {0: 1.0}
