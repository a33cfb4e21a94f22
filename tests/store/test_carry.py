"""A refined study starts with its parent's finished trials: carried once, counted apart."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from hpo.spec import load_spec
from tests.conftest import (
    HPO,
    assert_one_line,
    cli,
    start_workers,
    study_yaml,
    wait_all,
    write_study,
)
from tests.report.test_dashboard import dashboard, request

OBJECTIVE = '''
import time


def objective(trial):
    p = trial.params
    for step in range(3):
        trial.report((p["x"] - 2.0) ** 2 + 1.0 / (step + 1), step)
    time.sleep(0.05)  # long enough for two workers to overlap
    return (p["x"] - 2.0) ** 2 + (0.0 if p["kind"] == "a" else 1.0)
'''

STUDY = """
name: {name}
n_trials: 20
sampler: {{type: tpe, seed: 0, n_startup_trials: 5}}
objective: {{callable: "objective.py:objective"}}
search_space:
  x: {{type: float, low: -10.0, high: 10.0}}
  kind: {{type: categorical, choices: [a, b, c]}}
"""


def _coarse_then_refined(tmp_path, name: str, url: str | None = None):
    """The coarse study run, and the refined file `hpo refine` wrote (not yet run); in the
    SQLite file beside it unless `url` names a storage."""
    path = write_study(tmp_path, STUDY.format(name=name), objective=OBJECTIVE)
    storage = ["--storage", url] if url else []
    assert cli("run", path, "-q", *storage).exit_code == 0
    out = tmp_path / "refined.yaml"
    result = cli("refine", path, "--out", out, *storage)
    assert result.exit_code == 0, result.output
    coarse = optuna.load_study(study_name=name, storage=url or f"sqlite:///{tmp_path}/{name}.db")
    return out, coarse


def _workers(path, url: str, count: int) -> list[str]:
    """`hpo run FILE` in `count` processes at once, as the README starts workers."""
    outputs = wait_all(start_workers(path, url, count), timeout=200)
    for code, _, err in outputs:
        assert code == 0, err
    return [out for _, out, _ in outputs]


def test_workers_starting_together_carry_once_and_keep_the_budget_exact(tmp_path, storage_url):
    name = f"t-{uuid.uuid4().hex[:10]}"
    out, coarse = _coarse_then_refined(tmp_path, name, storage_url)
    spec = load_spec(out)
    inside = [t for t in coarse.trials
              if spec.search_space["x"].low <= t.params["x"] <= spec.search_space["x"].high
              and t.params["kind"] in spec.search_space["kind"].choices]
    assert 0 < len(inside) < len(coarse.trials)
    _workers(out, storage_url, 3)
    refined = optuna.load_study(study_name=f"{name}-stage2", storage=storage_url)
    carried = [t for t in refined.trials if "carried_from" in t.user_attrs]
    own = [t for t in refined.trials if "carried_from" not in t.user_attrs]
    # Each inside trial exactly once, whatever the race; the 20 trials of the budget are the
    # study's own, finished, and none is left running.
    assert Counter(t.user_attrs["carried_from"]["number"] for t in carried) == Counter(
        t.number for t in inside)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in own) == 20
    assert not any(t.state == TrialState.RUNNING for t in refined.trials)
    # The carried trials came first, so the sampler had them from its first proposal.
    assert max(t.number for t in carried) < min(t.number for t in own)
    # Their learning curves came along (the median pruner and the dashboard read them).
    origin = {t.number: t for t in coarse.trials}
    for trial in carried:
        source = origin[trial.user_attrs["carried_from"]["number"]]
        assert trial.intermediate_values == source.intermediate_values
        assert trial.distributions["x"].low == spec.search_space["x"].low
    status = json.loads(cli("status", out, "--storage", storage_url, "--json").output)
    assert status["carried"] == {"count": len(inside), "from": [name]}
    assert status["counts"]["COMPLETE"] + status["counts"]["PRUNED"] == 20


def test_status_report_and_list_show_carried_trials_apart(tmp_path):
    url = f"sqlite:///{tmp_path}/coarse.db"
    out, coarse = _coarse_then_refined(tmp_path, "coarse")
    result = cli("run", out, "-q", "--n-trials", "4")
    assert result.exit_code == 0, result.output
    refined = optuna.load_study(study_name="coarse-stage2", storage=url)
    carried = sum("carried_from" in t.user_attrs for t in refined.trials)
    status = cli("status", out).output
    assert (f"Study 'coarse-stage2': 4 complete, plus {carried} carried over from 'coarse'"
            in status)
    best = refined.best_trial
    if "carried_from" in best.user_attrs:  # the best so far came from the coarse study
        number = best.user_attrs["carried_from"]["number"]
        assert f"(trial {best.number}, carried over from 'coarse' #{number})" in status
    assert f"\n{best.number}{'*' if 'carried_from' in best.user_attrs else ''} " in status
    listed = cli("list", out).output.splitlines()
    row = next(line.split() for line in listed if line.startswith("coarse-stage2"))
    assert row[2] == "4" and row[7] == str(carried)  # complete, then carried
    report = tmp_path / "report.html"
    assert cli("report", out, "--out", report).exit_code == 0
    assert f"<li>{carried} carried over from &#x27;coarse&#x27;</li>" in report.read_text()


def test_plain_optuna_and_the_dashboard_read_a_refined_study(tmp_path):
    url = f"sqlite:///{tmp_path}/coarse.db"
    out, coarse = _coarse_then_refined(tmp_path, "coarse")
    assert cli("run", out, "-q", "--n-trials", "3").exit_code == 0
    refined = optuna.load_study(study_name="coarse-stage2", storage=url)
    assert refined.best_value <= coarse.best_value
    listed = subprocess.run(["optuna", "trials", "--study-name", "coarse-stage2",
                             "--storage", url, "-f", "json"], capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == len(refined.trials)
    with dashboard(out, "--read-only") as base:
        summaries = json.loads(request(f"{base}/api/studies")[1])["study_summaries"]
        study_id = next(s["study_id"] for s in summaries if s["study_name"] == "coarse-stage2")
        status, body = request(f"{base}/api/studies/{study_id}?after=0")
    assert status == 200
    detail = json.loads(body)
    assert len(detail["trials"]) == len(refined.trials)
    carried = sum("carried_from" in t.user_attrs for t in refined.trials)
    assert f"3 complete, plus {carried} carried over from 'coarse'" in detail["note"]["body"]


def test_a_missing_study_to_carry_from_is_one_line_and_writes_nothing(tmp_path):
    body = STUDY.format(name="fine") + "carry_from: coarse\n"
    path = write_study(tmp_path, body, objective=OBJECTIVE)
    result = cli("run", path)
    assert result.exit_code == 1
    assert_one_line(result.output.strip(), "Error: ",
                    ["study.yaml: carry_from: no study 'coarse'", "run that study first"])
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/fine.db")
    assert optuna.get_all_study_names(storage) == []


@pytest.mark.parametrize(("extra", "fragments"), [
    ("carry_from: fine\n", ["carry_from: 'fine' is this study itself"]),
    ("carry_from: coarse\nsampler: {type: grid}\n", ["carry_from: the grid sampler"]),
])
def test_carry_from_mistakes_are_one_line(tmp_path, extra, fragments):
    body = STUDY.format(name="fine").replace("sampler: {type: tpe, seed: 0, n_startup_trials: "
                                             "5}\n", "" if "sampler" in extra else
                                             "sampler: {type: tpe}\n") + extra
    body = body.replace("x: {type: float, low: -10.0, high: 10.0}",
                        "x: {type: float, low: -10.0, high: 10.0, step: 1.0}")
    path = write_study(tmp_path, body, objective=OBJECTIVE)
    result = cli("validate", path)
    assert result.exit_code == 1
    assert_one_line(result.output.strip(), "Error: ", fragments)


def test_inside_takes_a_trial_only_where_the_space_could_have_drawn_it(tmp_path):
    from hpo.store.carry import inside

    space = load_spec(write_study(tmp_path, """
        name: any
        n_trials: 1
        objective: {callable: "objective.py:objective"}
        search_space:
          opt: {type: categorical, choices: [sgd, adam]}
          momentum: {type: float, low: 0.5, high: 0.9, when: {opt: [sgd]}}
          nesterov: {type: categorical, choices: [true, false], when: {opt: [sgd]}}
          dampening: {type: float, low: 0.0, high: 0.5, step: 0.25, when: {nesterov: [false]}}
          units: {type: int, low: 16, high: 256, log: true}
          fixed: {type: categorical, choices: [3]}
        """, objective=OBJECTIVE)).search_space
    base = {"units": 64, "fixed": 3}
    assert inside({**base, "opt": "adam"}, space)
    assert inside({**base, "opt": "sgd", "momentum": 0.7, "nesterov": True}, space)
    assert inside({**base, "opt": "sgd", "momentum": 0.7, "nesterov": False,
                   "dampening": 0.25}, space)
    # An objective's own suggestions beyond the space are its business.
    assert inside({**base, "opt": "adam", "extra": 1.5}, space)
    refused = [
        {**base, "opt": "adam", "momentum": 0.7},  # momentum applies to sgd only
        {**base, "opt": "sgd", "nesterov": True},  # momentum missing where it applies
        {**base, "opt": "sgd", "momentum": 0.95, "nesterov": True},  # outside its range
        {**base, "opt": "sgd", "momentum": 0.7, "nesterov": False, "dampening": 0.3},  # step
        {**base, "opt": "sgd", "momentum": 0.7, "nesterov": False},  # dampening missing
        {"units": 300, "fixed": 3, "opt": "adam"},  # past the int's high
        {"units": 64, "fixed": 4, "opt": "adam"},  # not the fixed value
        {"fixed": 3, "opt": "adam"},  # an unconditional entry missing
    ]
    assert [inside(params, space) for params in refused] == [False] * len(refused)


def test_a_worker_finishes_a_setup_its_first_worker_died_in(tmp_path):
    from hpo.store import carry
    from hpo.store.study import SPEC_ATTR, SPEC_VERSION, SPEC_VERSION_ATTR

    url = f"sqlite:///{tmp_path}/coarse.db"
    out, coarse = _coarse_then_refined(tmp_path, "coarse")
    text = out.read_text() + "enqueue:\n  - {x: 1.5, kind: a}\n"
    out.write_text(text)
    spec = load_spec(out)
    # The first worker stored the identity and carried 3 trials, then died.
    study = optuna.create_study(study_name="coarse-stage2", storage=url)
    study.set_user_attr(SPEC_ATTR, spec.identity())
    study.set_user_attr(SPEC_VERSION_ATTR, SPEC_VERSION)
    trials, _ = carry.carriable(coarse, spec.search_space)
    assert len(trials) > 3
    study.add_trials([carry._carried_copy(t, "coarse", spec.search_space) for t in trials[:3]])
    result = cli("run", out, "-q", "--n-trials", "2")
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="coarse-stage2", storage=url)
    numbers = [t.user_attrs["carried_from"]["number"] for t in study.trials
               if "carried_from" in t.user_attrs]
    assert sorted(numbers) == sorted(t.number for t in trials)  # each once, the rest added
    assert study.user_attrs[carry.CARRIED_ATTR]["count"] == len(trials)
    assert study.metric_names == ["value"]
    own = [t for t in study.trials if "carried_from" not in t.user_attrs]
    assert own[0].params == {"x": 1.5, "kind": "a"}  # the file's enqueued trial ran first
    assert len(own) == 2


TRAINER = study_yaml(
    "coarse", direction="maximize", metric="val_accuracy", n_trials=10,
    sampler="{type: tpe, seed: 0, n_startup_trials: 4}",
    trainer="""
        data: {dataset: iris}
        model: {hidden: [16]}
        train: {epochs: 2}
    """, space="""
        lr: {type: float, low: 1.0e-3, high: 1.0, log: true}
        batch_size: {type: categorical, choices: [16, 32]}
    """)


def test_local_workers_run_a_refined_trainer_study_to_its_own_budget(tmp_path):
    path = write_study(tmp_path, TRAINER)
    assert cli("run", path, "-q", "--workers", "1").exit_code == 0
    out = tmp_path / "refined.yaml"
    assert cli("refine", path, "--out", out).exit_code == 0
    done = subprocess.run([HPO, "run", str(out), "--workers", "2"], capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="coarse-stage2",
                              storage=f"sqlite:///{tmp_path}/coarse.db")
    own = [t for t in study.trials if "carried_from" not in t.user_attrs]
    carried = len(study.trials) - len(own)
    assert carried > 0
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in own) == 10
    assert f"plus {carried} carried over from 'coarse'" in done.stdout
    assert "10/10" in done.stderr  # the launcher's bar counts the study's own trials
