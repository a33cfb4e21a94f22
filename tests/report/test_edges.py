"""Edge warnings: fire for a best value at the edge of its range, stay quiet where they must."""

from __future__ import annotations

import json

import optuna
import optuna_dashboard
import pytest

from hpo.report.edges import edge_warnings, limits_for
from hpo.spec import load_spec
from tests.conftest import cli, study_yaml, write_study


def _study(points: list[float], value, log: bool = False, low: float = 0.0, high: float = 1.0,
           diverge_above: float | None = None) -> optuna.Study:
    """A maximizing study that tried exactly `points` for x in [low, high]."""
    study = optuna.create_study(direction="maximize")
    for x in points:
        study.enqueue_trial({"x": x})

    def objective(trial):
        x = trial.suggest_float("x", low, high, log=log)
        if diverge_above is not None and x > diverge_above:
            trial.set_user_attr("prune_reason", "diverged: cost nan at step 3")
            raise optuna.TrialPruned()
        return value(x)

    study.optimize(objective, n_trials=len(points))
    return study


LINEAR = [0.05, 0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]


def test_an_optimum_past_the_upper_bound_is_flagged_with_a_widening():
    study = _study(LINEAR, lambda x: -(x - 1.5) ** 2)
    [warning] = edge_warnings(study)
    assert (warning.param, warning.edge, warning.best) == ("x", "high", 0.99)
    assert warning.widened_to == 1.5  # half the width further
    assert "widen high to 1.5" in warning.suggestion
    assert not warning.stability_wall


def test_an_optimum_past_the_upper_bound_on_a_log_scale():
    points = [1e-5 * 10 ** (3 * i / 9) for i in range(10)]  # 1e-5 .. 1e-2
    study = _study(points, lambda lr: -abs(__import__("math").log10(lr) + 1), log=True,
                   low=1e-5, high=1e-2)
    [warning] = edge_warnings(study)
    assert warning.edge == "high"
    assert warning.widened_to == pytest.approx(0.1)  # a decade at most on a log scale
    assert "log: true" in warning.suggestion


def test_interior_optima_are_quiet():
    assert edge_warnings(_study(LINEAR, lambda x: -(x - 0.5) ** 2)) == []


def test_hard_limits_are_quiet_and_others_at_the_low_edge_are_not():
    study = _study(LINEAR, lambda x: -x)  # best at the lowest x tried: 0.05
    [warning] = edge_warnings(study)
    assert warning.edge == "low"
    assert edge_warnings(study, {"x": (0.0, None)}) == []  # e.g. dropout 0
    assert edge_warnings(study, {"x": (-0.2, None)})[0].widened_to == -0.2  # not past it


def test_most_trials_past_the_best_diverging_is_a_stability_wall():
    points = [0.1, 0.3, 0.5, 0.7, 0.8, 0.93, 0.96, 0.97, 0.99]
    study = _study(points, lambda x: x, diverge_above=0.95)
    [warning] = edge_warnings(study)
    assert warning.stability_wall and warning.widened_to is None
    assert "stability wall" in warning.suggestion and "3 of the 3" in warning.suggestion


def test_natural_and_declared_limits(tmp_path):
    spec = load_spec(write_study(tmp_path, """
        name: t
        direction: maximize
        metric: val_accuracy
        n_trials: 2
        objective: {trainer: mlp, data: {dataset: iris}}
        search_space:
          dropout: {type: float, low: 0.0, high: 0.5}
          lr: {type: float, low: 1.0e-4, high: 0.1, log: true, limits: {high: 1.0}}
    """))
    limits = limits_for(spec)
    assert limits["dropout"] == (0.0, 0.9)
    assert limits["lr"] == (None, 1.0)


def test_limits_are_checked_and_do_not_change_a_study(tmp_path):
    def body(limits: str) -> str:
        return study_yaml(direction="maximize", n_trials=6, sampler="{type: random, seed: 0}",
                          function="maximize",
                          space=f"x: {{type: float, low: 0.0, high: 1.0{limits}}}")

    bad = write_study(tmp_path / "bad", body(", limits: {high: 0.5}"))
    result = cli("validate", bad)
    assert result.exit_code == 1
    assert "search_space.x: limits.high 0.5 is below high 1.0" in result.output
    path = write_study(tmp_path, body(""))
    assert cli("run", path, "-q").exit_code == 0
    status = json.loads(cli("status", path, "--json").output)
    [warning] = status["edge_warnings"]  # the optimum, 2, is past high
    assert set(warning) >= {"param", "edge", "best", "low", "high", "suggestion"}
    assert (warning["param"], warning["edge"]) == ("x", "high")
    assert "Edge warning, x:" in cli("status", path).output
    report = tmp_path / "report.html"
    assert cli("report", path, "--out", report).exit_code == 0
    assert 'id="edge-warnings"' in report.read_text() and "widen high" in report.read_text()
    study = optuna.load_study(study_name="quad", storage=f"sqlite:///{tmp_path}/quad.db")
    note = optuna_dashboard.get_note(study)
    assert "## Edge warnings" in note and "**x** (high edge)" in note
    # Declaring the limit afterwards resumes the same study and silences the warning.
    path.write_text(path.read_text().replace("high: 1.0}", "high: 1.0, limits: {high: 1.0}}"))
    result = cli("run", path, "-q", "--n-trials", "7")
    assert result.exit_code == 0, result.output
    assert json.loads(cli("status", path, "--json").output)["edge_warnings"] == []
