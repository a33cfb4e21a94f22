"""`hpo refine`: the next stage's file, narrowed or widened, validated, started from the best."""

from __future__ import annotations

import optuna
import pytest
import yaml
from click.testing import CliRunner

from hpo.cli import main
from hpo.spec import load_spec
from tests.conftest import assert_one_line, cli, study_yaml, write_study

OBJECTIVE = '''
def objective(trial):
    p = trial.params
    return -(p["x"] - 2.0) ** 2 - (0.0 if p["kind"] == "a" else 3.0) + 0.0 * p["noise"]
'''

def coarse(high: str = "10.0", limits: str = "") -> str:
    """The coarse study's file, x's high edge (and its limits) as given."""
    return study_yaml("coarse", direction="maximize", n_trials=30,
                      sampler="{type: random, seed: 3}", space=f"""
                          x: {{type: float, low: -10.0, high: {high}{limits}}}
                          kind: {{type: categorical, choices: [a, b, c]}}
                          noise: {{type: float, low: 1.0e-3, high: 1.0, log: true}}
                      """)


def _refined(tmp_path, high="10.0", limits=""):
    path = write_study(tmp_path, coarse(high, limits), objective=OBJECTIVE)
    assert cli("run", path, "-q").exit_code == 0
    out = tmp_path / "fine.yaml"
    result = cli("refine", path, "--out", out)
    assert result.exit_code == 0, result.output
    old = optuna.load_study(study_name="coarse", storage=f"sqlite:///{tmp_path}/coarse.db")
    return path, out, old


def test_a_refined_file_narrows_validates_and_carries_the_evidence_over(tmp_path):
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
    assert "# x: -10 .. 10 -> " in text and "top 6 trials' span" in text
    assert spec.carry_from == "coarse" and spec.enqueue == []
    # The next stage is its own study in the same database; it starts with every finished
    # trial of the old one inside its space, as they were, and they do not count as its own.
    inside = [t for t in old.trials if x.low <= t.params["x"] <= x.high
              and t.params["kind"] in spec.search_space["kind"].choices]
    result = cli("run", out, "-q", "--n-trials", "3")
    assert result.exit_code == 0, result.output
    assert "Ran 3 trials" in result.output
    assert f"3 complete, plus {len(inside)} carried over from 'coarse'" in result.output
    new = optuna.load_study(study_name="coarse-stage2", storage=f"sqlite:///{tmp_path}/coarse.db")
    carried = new.trials[:len(inside)]
    assert [t.user_attrs["carried_from"] for t in carried] == [
        {"study": "coarse", "number": t.number} for t in inside]
    assert [(t.params, t.value, t.state) for t in carried] == [
        (t.params, t.value, t.state) for t in inside]
    assert all("carried_from" not in t.user_attrs for t in new.trials[len(inside):])
    assert len(new.trials) == len(inside) + 3
    # The best so far is among the carried: the next study's best can only be as good.
    assert new.best_value >= best.value
    # A rerun has nothing left to do: carried trials are not carried twice.
    again = cli("run", out, "-q", "--n-trials", "3")
    assert again.exit_code == 0 and "Ran 0 trials" in again.output
    again_study = optuna.load_study(study_name="coarse-stage2",
                                    storage=f"sqlite:///{tmp_path}/coarse.db")
    assert len(again_study.trials) == len(new.trials)
    # Refining again needs --force to overwrite the file.
    assert cli("refine", path, "--out", out).exit_code == 1


def test_refine_dry_run_prints_the_file_and_writes_nothing(tmp_path):
    path = write_study(tmp_path, coarse(), objective=OBJECTIVE)
    assert cli("run", path, "-q").exit_code == 0
    result = CliRunner().invoke(main, ["refine", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "name: coarse-stage2" in result.stdout and "carry_from: coarse" in result.stdout
    assert "Carries over " in result.stderr and "of the 30 finished trials" in result.stderr
    assert not list(tmp_path.glob("*-next.yaml"))
    assert cli("refine", path).exit_code == 2  # neither --out nor --dry-run


def test_numeric_entries_are_never_fixed_by_importance(tmp_path):
    _, out, _ = _refined(tmp_path)
    entry = yaml.safe_load(out.read_text())["search_space"]["noise"]
    # `noise` does not matter at all, yet it stays a range (importance is only a comment).
    assert entry["type"] == "float" and entry["low"] < entry["high"]
    assert "PED-ANOVA importance" in out.read_text()


SMALL = """
name: small
direction: minimize
n_trials: 30
sampler: {type: tpe, seed: %d}
objective: {callable: "objective.py:objective"}
search_space:
  x: {type: float, low: 0.0, high: 1.0}
  y: {type: float, low: 0.0, high: 1.0}
  lr: {type: float, low: 1.0e-6, high: 1.0e-3, log: true}
"""

SMALL_OBJECTIVE = '''
import math


def objective(trial):
    p = trial.params
    return (p["x"] - 2) ** 2 + (p["y"] - 0.4) ** 2 + (math.log10(p["lr"]) + 2) ** 2
'''


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_lesser_entry_stays_searchable_once_the_others_narrow(tmp_path, seed):
    # y matters least while x and lr sit at their high edges; fixing it at a noisy best left
    # error no later trial could remove. It must stay a range that still holds y's optimum.
    path = write_study(tmp_path, SMALL % seed, objective=SMALL_OBJECTIVE)
    assert cli("run", path, "-q").exit_code == 0
    out = tmp_path / "next.yaml"
    assert cli("refine", path, "--out", out).exit_code == 0
    space = load_spec(out).search_space
    assert {name: entry.type for name, entry in space.items()} == {
        "x": "float", "y": "float", "lr": "float"}
    # x and lr keep (or widen) the high edges their optimum lies past.
    assert space["x"].high >= 1.0 and space["lr"].high >= 1.0e-3
    assert space["y"].low <= 0.4 <= space["y"].high


def _study_of(values: list[tuple[dict, float]]) -> optuna.Study:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    study = optuna.create_study(direction="minimize")
    distributions = {"x": FloatDistribution(0.0, 10.0),
                     "kind": CategoricalDistribution(["a", "b", "c", "d"])}
    for params, value in values:
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, value=value))
    return study


def _space_spec(tmp_path):
    return load_spec(write_study(tmp_path, """
        name: hand
        n_trials: 10
        objective: {callable: "objective.py:objective"}
        search_space:
          x: {type: float, low: 0.0, high: 10.0}
          kind: {type: categorical, choices: [a, b, c, d]}
        """, objective=OBJECTIVE))


def test_a_choice_is_dropped_only_after_a_fair_count_of_trials(tmp_path):
    from hpo.wisdom.refine import refine_space

    # Top 5 (of 20): all kind a. b was tried 10 times, c 4 times, d never: only b goes.
    trials = [({"x": 5.0 + i * 0.1, "kind": "a"}, i) for i in range(6)]
    trials += [({"x": 1.0 + i * 0.4, "kind": "b"}, 10 + i) for i in range(10)]
    trials += [({"x": 2.0 + i, "kind": "c"}, 20 + i) for i in range(4)]
    refinement = refine_space(_space_spec(tmp_path), _study_of(trials))
    assert refinement.space["kind"]["choices"] == ["a", "c", "d"]
    assert "dropped b (10 trials)" in refinement.comments["kind"]


def test_a_best_near_the_top_trials_edge_keeps_the_old_edge(tmp_path):
    from hpo.wisdom.refine import refine_space

    # The top 5 fill 3.0 .. 5.0 and the best, 5.0, is at their high end: the good region may
    # go on past it, so the high edge stays at 10; the low edge narrows to the box + margin.
    trials = [({"x": x, "kind": "a"}, value) for x, value in
              ((5.0, 0.0), (4.5, 1.0), (4.0, 2.0), (3.5, 3.0), (3.0, 4.0))]
    trials += [({"x": x, "kind": "a"}, 20.0 + x) for x in (0.5, 1.0, 1.5, 2.0, 2.2,
                                                          6.0, 7.0, 8.0, 9.0, 9.5)]
    refinement = refine_space(_space_spec(tmp_path), _study_of(trials))
    assert refinement.space["x"]["high"] == 10.0
    assert refinement.space["x"]["low"] == pytest.approx(2.5)
    assert "kept the old high edge" in refinement.comments["x"]
    # The same top trials with the best in the middle narrow on both sides.
    trials[0], trials[2] = ({"x": 5.0, "kind": "a"}, 2.0), ({"x": 4.0, "kind": "a"}, 0.0)
    refinement = refine_space(_space_spec(tmp_path), _study_of(trials))
    assert (refinement.space["x"]["low"], refinement.space["x"]["high"]) == pytest.approx(
        (2.5, 5.5))
    # A side where fewer than 5 trials went beyond the new edge is not cut: too little
    # evidence that nothing good lies there.
    refinement = refine_space(_space_spec(tmp_path), _study_of(trials[:5] + trials[10:]))
    assert (refinement.space["x"]["low"], refinement.space["x"]["high"]) == pytest.approx(
        (0.0, 5.5))
    assert "kept the old low edge: fewer than 5 trials went beyond it" in (
        refinement.comments["x"])


def test_an_edge_is_widened_but_not_past_a_limit(tmp_path):
    # The optimum, 2, lies past high: 1.
    _, out, _ = _refined(tmp_path / "free", high="1.0")
    assert load_spec(out).search_space["x"].high == 6.5  # half the width past the edge
    _, out, _ = _refined(tmp_path / "limited", high="1.0", limits=", limits: {high: 1.5}")
    assert load_spec(out).search_space["x"].high == 1.5


def test_refine_needs_finished_trials(tmp_path):
    path = write_study(tmp_path, coarse(), objective=OBJECTIVE)
    assert cli("run", path, "-q", "--n-trials", "2").exit_code == 0
    result = cli("refine", path, "--out", tmp_path / "next.yaml")
    assert result.exit_code == 1
    assert_one_line(result.output.strip(), "Error: ", ["2 completed trials", "at least 5"])
    assert not (tmp_path / "next.yaml").exists()


def test_enqueued_trials_run_first_and_are_checked(tmp_path):
    body = coarse() + "enqueue:\n  - {x: 1.5, kind: c, noise: 0.5}\n"
    path = write_study(tmp_path, body, objective=OBJECTIVE)
    assert cli("run", path, "-q", "--n-trials", "2").exit_code == 0
    study = optuna.load_study(study_name="coarse", storage=f"sqlite:///{tmp_path}/coarse.db")
    assert study.trials[0].params == {"x": 1.5, "kind": "c", "noise": 0.5}
    bad = write_study(tmp_path / "bad", body.replace("x: 1.5", "x: 15.0"), objective=OBJECTIVE)
    result = cli("run", bad)
    assert result.exit_code == 1
    assert_one_line(result.output.strip(), "Error: ", ["enqueue.0.x: 15.0 is outside"])


@pytest.mark.parametrize("seed", range(5))
def test_no_numeric_entry_is_ever_fixed_and_each_holds_the_best(tmp_path, seed):
    import random

    from optuna.distributions import FloatDistribution, IntDistribution

    from hpo.wisdom.refine import refine_space

    spec = load_spec(write_study(tmp_path, """
        name: any
        n_trials: 10
        objective: {callable: "objective.py:objective"}
        search_space:
          a: {type: float, low: 1.0e-6, high: 1.0, log: true}
          b: {type: float, low: -5.0, high: 5.0}
          c: {type: int, low: 1, high: 9}
          d: {type: float, low: 0.0, high: 1.0, step: 0.25}
        """, objective=OBJECTIVE))
    distributions = {"a": FloatDistribution(1e-6, 1.0, log=True), "b": FloatDistribution(-5, 5),
                     "c": IntDistribution(1, 9), "d": FloatDistribution(0, 1, step=0.25)}
    draw = random.Random(seed)
    study = optuna.create_study()
    for _ in range(draw.randint(5, 40)):
        params = {"a": 10 ** draw.uniform(-6, 0), "b": draw.uniform(-5, 5),
                  "c": draw.randint(1, 9), "d": draw.choice([0.0, 0.25, 0.5, 0.75, 1.0])}
        # Only `a` matters, so the others look negligible: none may be fixed for that.
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions,
            value=abs(params["a"] - 1e-3) + 1e-9 * params["b"]))
    refinement = refine_space(spec, study)
    best = study.best_trial.params
    for name, entry in refinement.space.items():
        assert entry["type"] == spec.search_space[name].type, refinement.comments[name]
        assert entry["low"] < entry["high"]
        assert entry["low"] <= best[name] <= entry["high"]
