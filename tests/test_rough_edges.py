"""The rough edges a new user met, each mended and held: strict JSON, validate importing the
objective, every mistake at once, the dashboard's --study and missing files, report options,
one meaning of "Ran N trials", the failure limit, usable CPUs, .dockerignore, completion."""

from __future__ import annotations

import json
import os
import re
import subprocess
from functools import partial

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import HPO, load, study_yaml, write_study
from tests.report.test_dashboard import dashboard, request
from tests.test_commands import hpo

NAN_OBJECTIVE = '''
import math


def objective(trial):
    trial.set_user_attr("curve", [1.0, float("nan"), float("inf")])
    trial.report(float("-inf") if trial.number == 0 else 1.0, 0)
    return trial.params["x"] ** 2
'''

QUAD = partial(study_yaml, sampler="{type: random, seed: 0}", extra="pruner: {divergence: false}",
               space="x: {type: float, low: -10.0, high: 10.0}")


def strict_json(text):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_json_outputs_are_strict_with_nan_and_infinity_as_null(tmp_path):
    path = write_study(tmp_path, QUAD(n_trials=2), objective=NAN_OBJECTIVE)
    assert hpo("run", path, "-q").returncode == 0
    exported = strict_json(hpo("export", path, "--format", "json").stdout)
    assert exported[0]["user_attrs"]["curve"] == [1.0, None, None]
    assert exported[0]["intermediate_values"] == {"0": None}
    assert exported[1]["intermediate_values"] == {"0": 1.0}
    status = strict_json(hpo("status", path, "--json").stdout)
    assert status["counts"]["COMPLETE"] == 2
    csv_text = hpo("export", path, "--format", "csv").stdout
    assert "NaN" not in csv_text and "Infinity" not in csv_text
    assert "[1.0, null, null]" in csv_text


def test_validate_imports_the_objective_as_run_would(tmp_path):
    path = write_study(tmp_path, QUAD(n_trials=2, function="objectve"))
    result = hpo("validate", path)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"Error: {path}: objective.callable: 'objective.py' has no "
                                     "function 'objectve'; did you mean 'objective'?")
    (tmp_path / "objective.py").unlink()
    result = hpo("validate", path)
    assert result.returncode == 1
    assert "objective.callable: no such file" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "quad.db").exists()


def test_trainer_sections_beside_a_callable_are_refused(tmp_path):
    path = write_study(tmp_path, QUAD(n_trials=2).replace(
        'objective: {callable: "objective.py:objective"}',
        'objective: {callable: "objective.py:objective", train: {epochs: 5}}'))
    result = hpo("run", path, "-q")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: {path}: objective: train configures the built-in trainer (trainer: mlp), not "
        "a callable; remove train, or read such settings in your function")
    assert not (tmp_path / "quad.db").exists()


def test_every_mistake_in_a_file_is_listed_at_once(tmp_path):
    path = write_study(tmp_path, """
        name: many
        direction: minimise
        n_trials: 0
        sampler: {type: tpe, sed: 1}
        objective: {callable: "objective.py:objective"}
        search_space:
          x: {type: float, low: 1.0, hihg: 2.0}
          y: {type: flot, low: 0, high: 1}
    """)
    result = hpo("run", path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith(f"Error: {path}: ") for line in lines)
    fields = [line.removeprefix(f"Error: {path}: ").split(":")[0] for line in lines]
    assert fields == ["direction", "n_trials", "sampler.sed", "search_space.x.hihg",
                      "search_space.y"]
    assert "did you mean 'high'" in lines[3] and "did you mean 'float'" in lines[4]
    assert not (tmp_path / "many.db").exists()


def test_whole_study_checks_list_every_problem(tmp_path):
    path = write_study(tmp_path, """
        name: trainer
        direction: minimize
        metric: val_accuracy
        n_trials: 2
        objective: {trainer: mlp, data: {dataset: digits}}
        search_space:
          optimzer: {type: categorical, choices: [adam]}
          initializer: {type: categorical, choices: [glorot]}
    """)
    lines = hpo("validate", path).stderr.strip().splitlines()
    assert [line.split(": ")[2] for line in lines] == [
        "direction", "search_space.optimzer", "search_space.initializer.choices"]


def test_dashboard_opens_the_named_study_and_refuses_what_is_not_there(tmp_path):
    path = write_study(tmp_path, QUAD(n_trials=2))
    assert hpo("run", path, "-q").returncode == 0
    storage = f"sqlite:///{tmp_path / 'quad.db'}"
    server = subprocess.Popen([HPO, "dashboard", "--storage", storage, "--study", "quad",
                               "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+)/dashboard/studies/(\d+)", line)
        assert found, line
        status, body = request(f"{found.group(1)}/api/studies/{found.group(2)}?after=0")
        assert status == 200 and len(json.loads(body)["trials"]) == 2
    finally:
        server.terminate()
        server.wait(timeout=30)
    with dashboard(path) as base:  # a study file opens its study's page too
        assert request(f"{base}/api/studies")[0] == 200
    named = hpo("dashboard", "--storage", storage, "--study", "qaud", "--port", "0")
    assert named.returncode == 1
    assert "no study named 'qaud'" in named.stderr and "did you mean 'quad'?" in named.stderr
    missing = tmp_path / "typo.db"
    refused = hpo("dashboard", "--storage", f"sqlite:///{missing}", "--port", "0")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"Error: no study database at {missing}; run `hpo run` "
                                      "on the study file first")
    assert not missing.exists()


def test_report_takes_top_like_status(tmp_path):
    path = write_study(tmp_path, QUAD(n_trials=5))
    assert hpo("run", path, "-q").returncode == 0
    out = tmp_path / "r.html"
    assert hpo("report", path, "--out", out, "--top", "2").returncode == 0
    table = re.search(r'<table id="best-trials">(.*?)</table>', out.read_text()).group(1)
    assert table.count("<tr>") == 3  # the header and 2 trials
    assert "--png" in hpo("report", "--help").stdout


def test_ran_n_trials_counts_this_commands_trials_by_state_for_one_and_many_workers(tmp_path):
    objective = ("def objective(trial):\n"
                 "    if trial.number % 3 == 2:\n"
                 "        raise RuntimeError('every third fails')\n"
                 "    return trial.params['x'] ** 2\n")
    path = write_study(tmp_path, QUAD(n_trials=4), objective=objective)
    one = hpo("run", path, "-q")
    assert one.returncode == 0, one.stderr
    states = [t.state for t in load(path).trials]
    assert states.count(TrialState.FAIL) >= 1
    assert re.search(rf"^Ran {len(states)} trials in [\d.]+ s \(4 complete, "
                     rf"{states.count(TrialState.FAIL)} fail\); stored in", one.stdout, re.M)
    many = hpo("run", path, "-q", "--workers", "2", "--n-trials", "8")
    assert many.returncode == 0, many.stderr
    after = [t.state for t in load(path).trials][len(states):]
    assert re.search(rf"^Ran {len(after)} trials with 2 workers in [\d.]+ s \(4 complete, "
                     rf"{after.count(TrialState.FAIL)} fail\)", many.stdout, re.M)


def test_the_failure_limit_is_set_in_the_study_file(tmp_path):
    body = QUAD(n_trials=20, function="failing") + "max_failures_in_a_row: 2\n"
    path = write_study(tmp_path, body)
    result = hpo("run", path, "-q")
    assert result.returncode == 1
    assert "Error: 2 trials in a row failed" in result.stderr
    assert "raise max_failures_in_a_row in the study file" in result.stderr
    assert [t.state for t in load(path).trials] == [TrialState.FAIL] * 2
    # A run-only setting: changing it resumes the same study.
    path.write_text(path.read_text().replace("in_a_row: 2", "in_a_row: 3"))
    assert hpo("run", path, "-q").returncode == 1
    assert len(load(path).trials) == 5


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 usable CPUs")
def test_torch_threads_follow_the_cpus_the_process_may_use(tmp_path):
    path = write_study(tmp_path, """
        name: threads
        direction: maximize
        metric: val_accuracy
        n_trials: 1
        objective:
          trainer: mlp
          data: {dataset: iris}
          train: {epochs: 1}
    """)
    cpu = min(os.sched_getaffinity(0))
    pinned = subprocess.run([HPO, "run", str(path), "-q"], capture_output=True, text=True,
                            timeout=240, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    assert pinned.returncode == 0, pinned.stderr
    study = optuna.load_study(study_name="threads", storage=f"sqlite:///{tmp_path}/threads.db")
    assert study.trials[0].user_attrs["threads"] == 1


def test_shell_completion_completes_commands_and_options():
    env = {"_HPO_COMPLETE": "bash_complete", "COMP_WORDS": "hpo en", "COMP_CWORD": "1"}
    completed = subprocess.run([HPO], capture_output=True, text=True, timeout=60,
                               env={**os.environ, **env})
    assert "plain,enqueue" in completed.stdout.splitlines()
    env.update(COMP_WORDS="hpo best --for", COMP_CWORD="2")
    completed = subprocess.run([HPO], capture_output=True, text=True, timeout=60,
                               env={**os.environ, **env})
    assert "plain,--format" in completed.stdout.splitlines()
