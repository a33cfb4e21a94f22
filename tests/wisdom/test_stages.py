"""Staged studies: coarse to fine in one `hpo run`, each stage its own study."""

from __future__ import annotations

import json
import subprocess
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from hpo.spec import load_spec
from tests.conftest import (
    HPO,
    assert_one_line,
    cli,
    server_url,
    start_workers,
    study_yaml,
    wait_all,
    write_study,
)

TRAINER = study_yaml(
    "staged", direction="maximize", metric="val_accuracy", n_trials=None,
    sampler="{type: tpe, seed: 0, n_startup_trials: 3}",
    trainer="""
        data: {dataset: iris}
        model: {hidden: [16]}
        train: {epochs: 3}
    """, space="""
        lr: {type: float, low: 1.0e-4, high: 1.0, log: true}
        dropout: {type: float, low: 0.0, high: 0.5}
        optimizer: {type: categorical, choices: [adam, sgd, momentum]}
    """, extra="""
        stages:
          - {name: lr, n_trials: 6, params: [lr], train: {epochs: 1}}
          - {name: all, n_trials: 6, train: {epochs: 2}}
          - {name: fine, n_trials: 3}
    """)


def _finished(study: optuna.Study) -> int:
    """The study's own finished trials (not those carried over from the stage before)."""
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               and "carried_from" not in t.user_attrs for t in study.trials)


def test_a_staged_study_runs_end_to_end_on_sqlite(tmp_path):
    path = write_study(tmp_path, TRAINER)
    done = subprocess.run([HPO, "run", str(path), "-q"], capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr
    assert "Ran 15 trials in 3 stages" in done.stdout
    storage = f"sqlite:///{tmp_path}/staged.db"
    lr, every, fine = (optuna.load_study(study_name=f"staged-{s}", storage=storage)
                       for s in ("lr", "all", "fine"))
    assert [_finished(s) for s in (lr, every, fine)] == [6, 6, 3]
    # Stage 1 searches lr alone, with its own epochs.
    assert all(set(t.params) == {"lr"} for t in lr.trials)
    assert all(t.user_attrs["epochs_run"] == 1 for t in lr.trials
               if t.state == TrialState.COMPLETE)
    # Stage 2 starts from stage 1's best, lr refined, the rest searched anew.
    assert every.trials[0].params["lr"] == lr.best_trial.params["lr"]
    lr_range = every.trials[0].distributions["lr"]
    assert lr_range.low <= lr.best_trial.params["lr"] <= lr_range.high
    assert {"dropout", "optimizer"} <= set(every.trials[-1].params)
    assert fine.trials[0].params == every.best_trial.params
    # Each stage trains longer than the one before: it measures something else, so it
    # carries nothing over but starts from the best, enqueued.
    assert not any("carried_from" in t.user_attrs for t in every.trials + fine.trials)
    assert all(t.user_attrs["epochs_run"] == 3 for t in fine.trials
               if t.state == TrialState.COMPLETE)
    # Status shows every stage; a rerun resumes and has nothing left to do.
    status = json.loads(cli("status", path, "--json").output)
    assert [(s["stage"], s["started"], s["counts"]["COMPLETE"] + s["counts"]["PRUNED"])
            for s in status["stages"]] == [("lr", True, 6), ("all", True, 6), ("fine", True, 3)]
    assert "Stage 3 of 3, fine" in cli("status", path).output
    again = cli("run", path, "-q")
    assert again.exit_code == 0 and "Ran 0 trials in 3 stages" in again.output
    # The report takes the latest stage unless --study names one.
    report = tmp_path / "report.html"
    assert cli("report", path, "--out", report).exit_code == 0
    assert "<h1>staged-fine</h1>" in report.read_text()


QUAD = '''
def objective(trial):
    p = trial.params
    return (p["x"] - 2.0) ** 2 + (0.0 if p["kind"] == "a" else 1.0)
'''

CALLABLE = """
name: %s
n_trials_note: unused
sampler: {type: tpe, seed: 1, n_startup_trials: 4}
objective: {callable: "objective.py:objective"}
search_space:
  x: {type: float, low: -10.0, high: 10.0}
  kind: {type: categorical, choices: [a, b, c]}
stages:
  - {name: x, n_trials: 8, params: [x], fixed: {kind: b}}
  - {name: all, n_trials: 8}
"""


def test_two_workers_share_each_stage_on_postgresql(tmp_path):
    url = server_url("postgresql")
    name = f"t-{uuid.uuid4().hex[:10]}"
    path = write_study(tmp_path, (CALLABLE % name).replace("n_trials_note: unused\n", ""),
                       objective=QUAD)
    workers = start_workers(path, url, 2)
    for code, _, err in wait_all(workers, timeout=200):
        assert code == 0, err
    storage = optuna.storages.RDBStorage(url)
    try:
        first = optuna.load_study(study_name=f"{name}-x", storage=storage)
        second = optuna.load_study(study_name=f"{name}-all", storage=storage)
        assert _finished(first) == 8 and _finished(second) == 8  # exact, shared budgets
        assert {t.params["kind"] for t in first.trials} == {"b"}  # fixed in stage 1
        # Stage 2 trains as stage 1 did (a callable has no train settings), so it starts with
        # stage 1's finished trials inside its space, carried once, the best among them.
        carried = [t.user_attrs["carried_from"] for t in second.trials
                   if "carried_from" in t.user_attrs]
        assert sorted(c["number"] for c in carried) == sorted(
            {c["number"] for c in carried})
        assert {"study": f"{name}-x", "number": first.best_trial.number} in carried
        assert {t.user_attrs["worker_pid"] for t in first.trials + second.trials} == {
            w.pid for w in workers}
    finally:
        for study in (f"{name}-x", f"{name}-all"):
            optuna.delete_study(study_name=study, storage=storage)
        storage.engine.dispose()


@pytest.mark.parametrize(("change", "fragments"), [
    (("params: [x], fixed: {kind: b}", "params: [x]"), ["stages.0", "'kind' has no value"]),
    (("params: [x]", "params: [y]"), ["stages.0.params", "'y' is not in search_space"]),
    (("{name: all, n_trials: 8}", "{name: all, n_trials: 8, train: {epochs: 2}}"),
     ["stages.1.train", "built-in trainer"]),
    (("{name: all, n_trials: 8}", "{name: x, n_trials: 8}"), ["stages.1.name", "two stages"]),
    (("sampler:", "n_trials: 5\nsampler:"), ["n_trials", "in each stage"]),
    (("n_trials: 8, params: [x]", "n_trials: 3, params: [x]"),
     ["stages.0.n_trials", "at least 5"]),
])
def test_mistakes_in_stages_are_one_line(tmp_path, change, fragments):
    body = (CALLABLE % "quad").replace("n_trials_note: unused\n", "").replace(*change)
    path = write_study(tmp_path, body, objective=QUAD)
    result = cli("run", path)
    assert result.exit_code == 1
    assert_one_line(result.output.strip(), f"Error: {path}: ", fragments)
    assert not (tmp_path / "quad.db").exists()


def test_the_shipped_staged_study_validates_and_refuses_n_trials(tmp_path):
    spec = load_spec("studies/digits-staged.yaml")
    assert [s.name for s in spec.stages] == ["lr", "all", "fine"]
    result = cli("run", "studies/digits-staged.yaml", "--n-trials", "3",
                 "--storage", f"sqlite:///{tmp_path}/x.db")
    assert result.exit_code == 1
    assert "--n-trials: a staged study sets n_trials in each stage" in result.output


def test_a_stage_with_too_few_completed_trials_is_carried_over_from_its_best(tmp_path):
    from hpo.wisdom.stages import _refinement

    spec = load_spec(write_study(tmp_path, (CALLABLE % "quad").replace(
        "n_trials_note: unused\n", ""), objective=QUAD))
    study = optuna.create_study()
    for x in (1.0, 3.0, 9.0):  # three completed, the rest pruned (diverged)
        study.enqueue_trial({"x": x, "kind": "a"})
    study.optimize(lambda t: (t.suggest_float("x", -10, 10) - 2) ** 2
                   + 0 * len(t.suggest_categorical("kind", ["a", "b", "c"])), n_trials=3)
    refinement = _refinement(spec, study)
    assert refinement.space["x"] == {"type": "float", "low": -10.0, "high": 10.0}
    assert refinement.enqueue == {"x": 1.0, "kind": "a"}


def test_the_dashboard_lists_every_stage_with_its_note(tmp_path):
    from tests.report.test_dashboard import dashboard, request

    body = (CALLABLE % "quad").replace("n_trials_note: unused\n", "")
    path = write_study(tmp_path, body, objective=QUAD)
    assert cli("run", path, "-q").exit_code == 0
    with dashboard(path, "--read-only") as base:
        summaries = json.loads(request(f"{base}/api/studies")[1])["study_summaries"]
        assert sorted(s["study_name"] for s in summaries) == ["quad-all", "quad-x"]
        notes = {s["study_name"]: json.loads(request(
            f"{base}/api/studies/{s['study_id']}?after=0")[1])["note"]["body"]
            for s in summaries}
    assert notes["quad-x"].startswith("# quad-x") and notes["quad-all"].startswith("# quad-all")
    # Each note holds its stage's study file as run: stage x held kind at b.
    assert "kind:\n    type: categorical\n    choices:\n    - b" in notes["quad-x"]


def test_a_stage_created_before_carrying_existed_resumes_as_it_was(tmp_path):
    # hpo before carrying stored stage 2 with the best enqueued and no carry_from; a rerun
    # must take the stage as stored, not refuse it as a different spec.
    body = (CALLABLE % "quad").replace("n_trials_note: unused\n", "")
    path = write_study(tmp_path, body, objective=QUAD)
    assert cli("run", path, "-q").exit_code == 0
    storage = f"sqlite:///{tmp_path}/quad.db"
    second = optuna.load_study(study_name="quad-all", storage=storage)
    stored = dict(second.user_attrs["hpo_spec"])
    assert stored.pop("carry_from") == "quad-x"
    stored["enqueue"] = [{"x": 2.0, "kind": "a"}]
    second.set_user_attr("hpo_spec", stored)
    again = cli("run", path, "-q")
    assert again.exit_code == 0, again.output
    assert "Ran 0 trials in 2 stages" in again.output


def test_stages_that_train_alike_carry_and_pack_changes_nothing(tmp_path):
    from hpo.wisdom.stages import trains_as_before

    spec = load_spec(write_study(tmp_path, TRAINER.replace(
        "  - {name: fine, n_trials: 3}",
        "  - {name: fine, n_trials: 5, train: {epochs: 2, pack: 1}}\n"
        "  - {name: last, n_trials: 3, train: {epochs: 3}}")))
    # all -> fine: 2 epochs both, pack aside; fine -> last: 3 epochs is the file's own too,
    # but more than fine's 2.
    assert [trains_as_before(spec, i) for i in range(4)] == [False, False, True, False]
