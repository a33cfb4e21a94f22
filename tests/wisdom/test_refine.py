"""`hpo refine`: the next stage's file, narrowed or widened, validated, started from the best."""

from __future__ import annotations

import optuna
import pytest
import yaml

from hpo.spec import load_spec
from tests.conftest import assert_one_line, cli, write_study

OBJECTIVE = '''
def objective(trial):
    p = trial.params
    return -(p["x"] - 2.0) ** 2 - (0.0 if p["kind"] == "a" else 3.0) + 0.0 * p["noise"]
'''

STUDY = """
name: coarse
direction: maximize
n_trials: 30
sampler: {type: random, seed: 3}
objective: {callable: "objective.py:objective"}
search_space:
  x: {type: float, low: -10.0, high: %s%s}
  kind: {type: categorical, choices: [a, b, c]}
  noise: {type: float, low: 1.0e-3, high: 1.0, log: true}
"""


def _refined(tmp_path, high="10.0", limits=""):
    path = write_study(tmp_path, STUDY % (high, limits), objective=OBJECTIVE)
    assert cli("run", path, "-q").exit_code == 0
    out = tmp_path / "fine.yaml"
    result = cli("refine", path, "--out", out)
    assert result.exit_code == 0, result.output
    old = optuna.load_study(study_name="coarse", storage=f"sqlite:///{tmp_path}/coarse.db")
    return path, out, old


def test_a_refined_file_narrows_validates_and_starts_from_the_best(tmp_path):
    path, out, old = _refined(tmp_path)
    spec = load_spec(out)  # it validates
    text = out.read_text()
    assert spec.name == "coarse-stage2"
    x = spec.search_space["x"]
    best = old.best_trial
    assert x.low <= best.params["x"] <= x.high
    assert x.high - x.low < 20.0 / 2  # narrowed around the top trials
    assert x.low <= 2.0 <= x.high
    top_kinds = {t.params["kind"] for t in sorted(
        (t for t in old.trials if t.value is not None), key=lambda t: -t.value)[:6]}
    assert set(spec.search_space["kind"].choices) <= top_kinds
    assert "# x: -10 .. 10 -> " in text and "quantiles" in text
    assert spec.enqueue == [best.params]
    # The next stage is its own study in the same database, and its first trial is the best.
    result = cli("run", out, "-q", "--n-trials", "1")
    assert result.exit_code == 0, result.output
    new = optuna.load_study(study_name="coarse-stage2", storage=f"sqlite:///{tmp_path}/coarse.db")
    assert new.trials[0].params == best.params
    assert new.trials[0].value == pytest.approx(best.value)
    # Refining again counts up, and an existing file is not overwritten.
    assert cli("refine", path, "--out", out).exit_code == 1


def test_negligible_entries_are_fixed_at_the_best_value(tmp_path):
    _, out, old = _refined(tmp_path)
    entry = yaml.safe_load(out.read_text())["search_space"]["noise"]
    assert entry == {"type": "categorical", "choices": [old.best_trial.params["noise"]]}
    assert "PED-ANOVA importance" in out.read_text()


def test_an_edge_is_widened_but_not_past_a_limit(tmp_path):
    # The optimum, 2, lies past high: 1.
    _, out, _ = _refined(tmp_path / "free", high="1.0")
    assert load_spec(out).search_space["x"].high == 6.5  # half the width past the edge
    _, out, _ = _refined(tmp_path / "limited", high="1.0", limits=", limits: {high: 1.5}")
    assert load_spec(out).search_space["x"].high == 1.5


def test_refine_needs_finished_trials(tmp_path):
    path = write_study(tmp_path, STUDY % ("10.0", ""), objective=OBJECTIVE)
    assert cli("run", path, "-q", "--n-trials", "2").exit_code == 0
    result = cli("refine", path, "--out", tmp_path / "next.yaml")
    assert result.exit_code == 1
    assert_one_line(result.output.strip(), "Error: ", ["2 completed trials", "at least 5"])
    assert not (tmp_path / "next.yaml").exists()


def test_enqueued_trials_run_first_and_are_checked(tmp_path):
    body = STUDY % ("10.0", "") + "enqueue:\n  - {x: 1.5, kind: c, noise: 0.5}\n"
    path = write_study(tmp_path, body, objective=OBJECTIVE)
    assert cli("run", path, "-q", "--n-trials", "2").exit_code == 0
    study = optuna.load_study(study_name="coarse", storage=f"sqlite:///{tmp_path}/coarse.db")
    assert study.trials[0].params == {"x": 1.5, "kind": "c", "noise": 0.5}
    bad = write_study(tmp_path / "bad", body.replace("x: 1.5", "x: 15.0"), objective=OBJECTIVE)
    result = cli("run", bad)
    assert result.exit_code == 1
    assert_one_line(result.output.strip(), "Error: ", ["enqueue.0.x: 15.0 is outside"])
