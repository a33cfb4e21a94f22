from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import cli, load, study_yaml, wait_until, write_study


def study_file(tmp_path, n_trials=10, sampler="{type: tpe, seed: 0}", function="objective",
               direction="minimize", x_extra=""):
    return write_study(tmp_path, study_yaml(
        n_trials=n_trials, sampler=sampler, function=function, direction=direction,
        space=f"""
            x: {{type: float, low: -5.0, high: 5.0{x_extra}}}
            kind: {{type: categorical, choices: [a, b]}}
        """))


@pytest.mark.parametrize("sampler", ["{type: tpe, seed: 0}", "{type: random, seed: 0}",
                                     "{type: tpe, seed: 1, n_startup_trials: 3}"])
def test_sampler_runs_to_completion(tmp_path, sampler):
    path = study_file(tmp_path, n_trials=12, sampler=sampler)
    result = cli("run", path, "-q")
    assert result.exit_code == 0, result.output
    study = load(path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 12
    assert study.best_value == min(t.value for t in study.trials)
    assert "Study 'quad': 12 complete" in result.output
    best = study.best_trial
    assert f"Best value = {best.value:.6g} (trial {best.number})" in result.output


def test_seeded_sampler_repeats_its_trials(tmp_path):
    first = study_file(tmp_path / "a", n_trials=6, sampler="{type: random, seed: 3}")
    second = study_file(tmp_path / "b", n_trials=6, sampler="{type: random, seed: 3}")
    cli("run", first, "-q")
    cli("run", second, "-q")
    assert [t.params for t in load(first).trials] == [t.params for t in load(second).trials]


def grid_study(tmp_path, n_trials):
    return write_study(tmp_path, f"""
        name: quad
        n_trials: {n_trials}
        sampler: {{type: grid, seed: 0}}
        objective: {{callable: "objective.py:objective"}}
        search_space:
          x: {{type: float, low: 0.0, high: 1.0, step: 0.5}}
          kind: {{type: categorical, choices: [a, b]}}
          n: {{type: int, low: 1, high: 2}}
    """)


def test_grid_evaluates_each_point_once_and_ends_with_the_grid(tmp_path):
    path = grid_study(tmp_path, n_trials=100)
    result = cli("run", path, "-q")
    assert result.exit_code == 0, result.output
    points = [tuple(sorted(t.params.items())) for t in load(path).trials]
    assert len(points) == 3 * 2 * 2
    assert len(set(points)) == len(points)
    assert {p[2][1] for p in points} == {0.0, 0.5, 1.0}  # x values from the step
    # A rerun of a finished grid runs nothing more.
    assert cli("run", path, "-q").exit_code == 0
    assert len(load(path).trials) == 12


def test_grid_smaller_budget_runs_that_many_distinct_points(tmp_path):
    path = grid_study(tmp_path, n_trials=5)
    assert cli("run", path, "-q").exit_code == 0
    points = [tuple(sorted(t.params.items())) for t in load(path).trials]
    assert len(points) == len(set(points)) == 5


def test_resume_and_n_trials_override(tmp_path):
    path = study_file(tmp_path, n_trials=8)
    assert cli("run", path, "-q", "--n-trials", "3").exit_code == 0
    assert len(load(path).trials) == 3
    assert cli("run", path, "-q").exit_code == 0  # resumes: 5 more, not 8
    assert len(load(path).trials) == 8
    assert cli("run", path, "-q").exit_code == 0  # budget met: nothing runs
    assert len(load(path).trials) == 8
    result = cli("run", path, "-q", "--n-trials", "10")
    assert "Ran 2 trials" in result.output
    assert len(load(path).trials) == 10


def test_budget_counts_pruned_but_not_failed_trials(tmp_path):
    path = write_study(tmp_path, """
        name: quad
        n_trials: 6
        sampler: {type: random, seed: 0}
        objective: {callable: "objective.py:objective"}
        search_space:
          outcome: {type: categorical, choices: [ok, prune, fail]}
    """, objective='''
import optuna


def objective(trial):
    outcome = trial.params["outcome"]
    if outcome == "prune":
        raise optuna.TrialPruned("asked to")
    if outcome == "fail":
        raise ValueError("asked to fail")
    return 1.0
''')
    result = cli("run", path, "-q")
    assert result.exit_code == 0, result.output
    trials = load(path).trials
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(finished) == 6
    assert failed, "seed 0 draws some failures"
    for trial in failed:
        assert trial.user_attrs["fail_reason"] == "ValueError: asked to fail"
    for trial in trials:
        if trial.state == TrialState.PRUNED:
            assert trial.user_attrs["prune_reason"] == "asked to"


def _rows(db_path):
    with sqlite3.connect(db_path) as connection:
        tables = [r[0] for r in connection.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: connection.execute(f"SELECT * FROM {t}").fetchall() for t in tables}


def test_changed_spec_is_refused_and_writes_nothing(tmp_path):
    path = study_file(tmp_path, n_trials=3)
    assert cli("run", path, "-q").exit_code == 0
    before = _rows(tmp_path / "quad.db")
    path.write_text(path.read_text().replace("high: 5.0", "high: 9.0"))
    result = cli("run", path, "-q")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert ("was created from a different spec: search_space.x.high is 5.0 there but 9.0 in "
            "study.yaml; to start a new study, change `name:`") in result.output
    assert _rows(tmp_path / "quad.db") == before


def test_budget_fields_may_change_between_runs(tmp_path):
    path = study_file(tmp_path, n_trials=2)
    assert cli("run", path, "-q").exit_code == 0
    path.write_text(path.read_text().replace("n_trials: 2", "n_trials: 4"))
    assert cli("run", path, "-q").exit_code == 0
    assert len(load(path).trials) == 4


def test_spec_is_stored_in_the_study(tmp_path):
    path = study_file(tmp_path, n_trials=1)
    cli("run", path, "-q")
    attrs = load(path).user_attrs
    stored = attrs["hpo_spec"]
    # Defaults are left out: a field a later hpo adds must not change a study's identity.
    assert stored["search_space"]["x"] == {"type": "float", "low": -5.0, "high": 5.0}
    assert "n_trials" not in stored and "storage" not in stored
    assert attrs["hpo_spec_version"] == 2


def test_trial_records_worker_and_duration(tmp_path):
    path = study_file(tmp_path, n_trials=2)
    cli("run", path, "-q")
    for trial in load(path).trials:
        assert trial.user_attrs["worker_host"] == socket.gethostname()
        assert trial.user_attrs["worker_pid"] == os.getpid()
        assert 0 <= trial.user_attrs["duration_s"] < 5


def test_reports_are_stored(tmp_path):
    path = study_file(tmp_path, n_trials=3, function="reporting")
    assert cli("run", path, "-q").exit_code == 0
    for trial in load(path).trials:
        x = trial.params["x"]
        assert trial.intermediate_values == pytest.approx(
            {step: (x - 2.0) ** 2 + 1.0 / (step + 1) for step in range(5)})


def test_objective_failing_every_time_stops_with_one_line(tmp_path):
    path = study_file(tmp_path, n_trials=20, function="failing")
    result = cli("run", path, "-q")
    assert result.exit_code == 1
    assert ("Error: 5 trials in a row failed, the last with RuntimeError: the objective is "
            "broken; fix the objective (run with --debug for the traceback)") in result.output
    assert "Traceback" not in result.output
    assert [t.state for t in load(path).trials] == [TrialState.FAIL] * 5


@pytest.mark.parametrize(("returned", "reason"), [
    ("float('nan')", "ValueError: the objective returned nan, not a finite number"),
    ("None", "TypeError: the objective returned None, not a number"),
])
def test_non_numeric_result_fails_the_trial(tmp_path, returned, reason):
    path = write_study(tmp_path, """
        name: quad
        n_trials: 1
        objective: {callable: "objective.py:objective"}
    """, objective=f"def objective(trial):\n    return {returned}\n")
    cli("run", path, "-q", "--n-trials", "1")
    trial = load(path).trials[0]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == reason


def test_maximize(tmp_path):
    path = study_file(tmp_path, n_trials=10, function="maximize", direction="maximize")
    assert cli("run", path, "-q").exit_code == 0
    study = load(path)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.best_value == max(t.value for t in study.trials)


def test_timeout_stops_starting_trials(tmp_path):
    path = write_study(tmp_path, """
        name: quad
        timeout: 0.6
        objective: {callable: "objective.py:objective"}
    """, objective="import time\n\ndef objective(trial):\n    time.sleep(0.25)\n    return 1.0\n")
    assert cli("run", path, "-q").exit_code == 0
    assert 2 <= len(load(path).trials) <= 4


def test_study_readable_by_optuna_cli(tmp_path):
    path = study_file(tmp_path, n_trials=3)
    cli("run", path, "-q")
    optuna_cli = os.path.join(os.path.dirname(sys.executable), "optuna")
    output = subprocess.run(
        [optuna_cli, "trials", "--study-name", "quad", "--storage",
         f"sqlite:///{tmp_path}/quad.db", "-f", "json"],
        capture_output=True, text=True, check=True,
    ).stdout
    trials = json.loads(output)
    assert [t["state"] for t in trials] == ["COMPLETE"] * 3
    assert {t["number"] for t in trials} == {0, 1, 2}


def test_without_heartbeats_a_dead_workers_trial_does_not_block_the_run(tmp_path):
    path = study_file(tmp_path, n_trials=3)
    path.write_text(path.read_text() + "heartbeat: false\n")
    assert cli("run", path, "-q", "--n-trials", "1").exit_code == 0
    study = load(path)
    study.ask()  # a trial left RUNNING, as by a worker killed with kill -9
    result = cli("run", path, "-q")
    assert result.exit_code == 0, result.output
    counts = {s: sum(t.state == s for t in load(path).trials) for s in TrialState}
    assert counts[TrialState.COMPLETE] == 3 and counts[TrialState.RUNNING] == 1


def test_with_heartbeats_a_dead_workers_trial_is_failed_and_rerun(tmp_path):
    path = study_file(tmp_path, n_trials=2)
    path.write_text(path.read_text() + "heartbeat: {interval: 1, grace: 2, max_retries: 1}\n")
    assert cli("run", path, "-q", "--n-trials", "1").exit_code == 0
    # A RUNNING trial with a last heartbeat long ago: its worker died.
    from hpo.store.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path}/quad.db")
    study = optuna.load_study(study_name="quad", storage=storage)
    orphan = study.ask({"x": optuna.distributions.FloatDistribution(-5.0, 5.0)})
    storage.record_heartbeat(orphan._trial_id)
    from hpo.store.optuna_compat import rdb_backend, stale_trial_ids, study_id

    wait_until(lambda: stale_trial_ids(rdb_backend(storage), study_id(study), 2), 10,
               "the orphan's heartbeat to be over 2 s old")
    result = cli("run", path, "-q")
    assert result.exit_code == 0, result.output
    trials = load(path).trials
    assert trials[orphan.number].state == TrialState.FAIL
    retry = [t for t in trials if t.user_attrs.get("retry_of") == orphan.number]
    assert len(retry) == 1 and retry[0].params["x"] == trials[orphan.number].params["x"]
    assert TrialState.RUNNING not in {t.state for t in trials}


def test_an_optuna_whose_ask_ignores_the_claim_is_refused_in_one_line(tmp_path, monkeypatch):
    from hpo.store.optuna_compat import ClaimingStudy

    # As if a later Optuna renamed the hook: ask would start a trial nobody claimed.
    monkeypatch.setattr(ClaimingStudy, "_pop_waiting_trial_id", optuna.Study._pop_waiting_trial_id)
    path = study_file(tmp_path, n_trials=3)
    result = cli("run", path, "-q")
    assert result.exit_code == 1
    assert "ask did not run the trial this worker claimed; install optuna>=5,<6" in result.output
    assert "Traceback" not in result.output


def test_stale_trials_are_failed_only_under_the_study_lock(tmp_path, monkeypatch):
    # Failing a dead worker's trial and queueing its retry are two commits; a worker counting
    # between them would see a free slot and overshoot. So reaping runs under the study lock.
    import fcntl

    from hpo.store.heartbeat import Reaper

    path = study_file(tmp_path, n_trials=3)
    lock_file = tmp_path / "quad.hpo-lock"
    seen = []
    real = Reaper.reap

    def checking(self):
        with lock_file.open("a") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen.append("free")
                fcntl.flock(other, fcntl.LOCK_UN)
            except BlockingIOError:
                seen.append("held")
        return real(self)

    monkeypatch.setattr(Reaper, "reap", checking)
    assert cli("run", path, "-q").exit_code == 0
    assert seen and set(seen) == {"held"}


def test_enqueued_trials_count_against_n_trials(tmp_path):
    path = study_file(tmp_path, n_trials=3)
    assert cli("run", path, "-q", "--n-trials", "1").exit_code == 0
    study = load(path)
    for x in (0.5, 1.5, 2.5, 3.5):
        study.enqueue_trial({"x": x, "kind": "a"})
    result = cli("run", path, "-q")
    assert result.exit_code == 0, result.output
    trials = load(path).trials
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 3
    assert [t.params["x"] for t in finished[1:]] == [0.5, 1.5]  # the queue, in order
    assert [t.state for t in trials].count(TrialState.WAITING) == 2  # for a larger budget


def _v1_identity(path):
    # What hpo 0.1 stored: every default, no heartbeat, no version attr.
    from hpo.spec import load_spec

    spec = load_spec(path)
    return spec.model_dump(mode="json", exclude={"n_trials", "timeout", "storage", "heartbeat"},
                           exclude_none=True)


def test_a_study_from_an_older_hpo_runs_on_and_is_upgraded(tmp_path):
    path = study_file(tmp_path, n_trials=2)
    stored = _v1_identity(path)
    study = optuna.create_study(study_name="quad", storage=f"sqlite:///{tmp_path}/quad.db")
    study.set_user_attr("hpo_spec", stored)
    study.enqueue_trial({"x": 1.0, "kind": "a"})
    result = cli("run", path, "-q")
    assert result.exit_code == 0, result.output
    attrs = load(path).user_attrs
    assert attrs["hpo_spec_version"] == 2
    assert "log" not in attrs["hpo_spec"]["search_space"]["x"]  # defaults dropped


def test_a_field_added_by_a_later_hpo_does_not_refuse_an_existing_study(tmp_path):
    path = study_file(tmp_path, n_trials=2)
    stored = _v1_identity(path)
    del stored["pruner"]["divergence"]  # as if hpo 0.1 had no divergence settings yet
    study = optuna.create_study(study_name="quad", storage=f"sqlite:///{tmp_path}/quad.db")
    study.set_user_attr("hpo_spec", stored)
    assert cli("run", path, "-q").exit_code == 0


def test_a_study_from_a_newer_hpo_is_refused_in_one_line(tmp_path):
    path = study_file(tmp_path, n_trials=2)
    assert cli("run", path, "-q", "--n-trials", "1").exit_code == 0
    load(path).set_user_attr("hpo_spec_version", 3)
    before = _rows(tmp_path / "quad.db")
    result = cli("run", path, "-q")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert "was written by a newer hpo (spec version 3, this one knows 2); upgrade hpo" in (
        result.output)
    assert _rows(tmp_path / "quad.db") == before


def test_an_older_studys_different_spec_is_refused_by_name(tmp_path):
    path = study_file(tmp_path, n_trials=2)
    stored = _v1_identity(path)
    stored["search_space"]["x"]["high"] = 9.0
    study = optuna.create_study(study_name="quad", storage=f"sqlite:///{tmp_path}/quad.db")
    study.set_user_attr("hpo_spec", stored)
    result = cli("run", path, "-q")
    assert result.exit_code == 1
    assert "search_space.x.high is 9.0 there but 5.0 in study.yaml" in result.output


def test_a_changed_direction_names_both_values_and_hpo_delete(tmp_path):
    # The file sets `direction: minimize`, the default: the message says so, not "not set".
    path = write_study(tmp_path, study_yaml(direction="maximize", function="maximize",
                                            n_trials=2))
    assert cli("run", path, "-q").exit_code == 0
    path.write_text(path.read_text().replace("direction: maximize", "direction: minimize"))
    before = _rows(tmp_path / "quad.db")
    result = cli("run", path, "-q")
    assert result.exit_code == 1
    assert ("direction is 'maximize' there but 'minimize' (the default) in study.yaml; to start "
            "a new study, change `name:` in the file (or delete the old one: hpo delete "
            "study.yaml)") in result.output
    assert _rows(tmp_path / "quad.db") == before
