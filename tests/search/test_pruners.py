from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from hpo.search.pruners import DivergenceMonitor, DivergencePruner, divergence_reason
from tests.conftest import cli, load, study_yaml, write_study


@pytest.mark.parametrize(
    ("ratio", "diverged"),
    [(2.99, False), (3.0, False), (3.01, True), (0.5, False)],
)
def test_ratio_boundary(ratio, diverged):
    assert (divergence_reason(2.0, 2.0 * ratio, 7, 3.0) is not None) is diverged


@pytest.mark.parametrize("cost", [math.nan, math.inf, -math.inf])
def test_non_finite_cost_diverges(cost):
    reason = divergence_reason(2.0, cost, 3, 3.0)
    assert reason is not None and reason.startswith("diverged")


def test_reason_text():
    reason = divergence_reason(2.3, 7.41, 12, 3.0)
    assert reason == "diverged: cost 7.41 > 3.0 × original 2.3 at step 12"


def test_non_positive_original_cost_only_non_finite_diverges():
    assert divergence_reason(-1.0, 100.0, 1, 3.0) is None
    assert divergence_reason(0.0, 5.0, 1, 3.0) is None
    assert divergence_reason(-1.0, math.nan, 1, 3.0) is not None


def test_monitor_takes_first_cost_as_original():
    monitor = DivergenceMonitor(3.0)
    assert monitor.check(1.0, 0) is None
    assert monitor.check(2.9, 1) is None
    assert monitor.check(0.1, 2) is None  # a lower cost never resets the original
    assert monitor.check(3.2, 3).startswith("diverged: cost 3.2 > 3.0 × original 1")


def test_divergence_pruner_in_plain_optuna():
    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        costs = [1.0, 2.0, 3.05 if x > 0.5 else 2.95, 1.0]
        for step, cost in enumerate(costs):
            trial.report(cost, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return cost

    study = optuna.create_study(pruner=DivergencePruner(3.0),
                                sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(objective, n_trials=20)
    for trial in study.trials:
        expected = TrialState.PRUNED if trial.params["x"] > 0.5 else TrialState.COMPLETE
        assert trial.state == expected
        if expected == TrialState.PRUNED:
            assert trial.last_step == 2


def test_divergence_pruner_rejects_factor_at_most_one():
    with pytest.raises(ValueError, match="factor must be greater than 1"):
        DivergencePruner(1.0)


DIVERGING = '''
import math
import optuna


def objective(trial):
    # cost starts at 1.0; from step 3 a trial costs `ratio` times that
    ratio = trial.params["ratio"]
    for step in range(6):
        cost = 1.0 if step < 3 else ratio
        trial.report(cost, step)
    return cost


def nan_cost(trial):
    trial.report(1.0, 0)
    trial.report(float("nan"), 1)
    trial.report(0.5, 2)  # never reached: the trial stopped at the NaN
    return 0.5


def accuracy_with_cost(trial):
    import hpo

    for step in range(5):
        trial.report(0.5 + step / 10, step)  # accuracy, not a cost
        hpo.report_cost(trial, 2.0 if step < 2 else 9.0, step)
    return 0.9
'''


def _study(tmp_path, callable_, direction="minimize", extra="", ratios="[2.99, 3.0, 3.01]"):
    return write_study(tmp_path, study_yaml(
        direction=direction, n_trials=1, function=callable_, extra=extra,
        space=f"ratio: {{type: categorical, choices: {ratios}}}"), objective=DIVERGING)


@pytest.mark.parametrize(("ratio", "state"), [
    (2.99, TrialState.COMPLETE), (3.0, TrialState.COMPLETE), (3.01, TrialState.PRUNED),
])
def test_run_stops_diverged_trial_at_that_report(tmp_path, ratio, state):
    path = _study(tmp_path, "objective", ratios=f"[{ratio}]")
    result = cli("run", path, "-q")
    assert result.exit_code == 0, result.output
    trial = load(path).trials[0]
    assert trial.state == state
    if state == TrialState.PRUNED:
        assert trial.user_attrs["prune_reason"] == (
            "diverged: cost 3.01 > 3.0 × original 1 at step 3"
        )
        assert trial.last_step == 3  # stopped at the report, not at the end
    else:
        assert "prune_reason" not in trial.user_attrs
        assert trial.last_step == 5


def test_nan_cost_prunes(tmp_path):
    path = _study(tmp_path, "nan_cost")
    assert cli("run", path, "-q").exit_code == 0
    trial = load(path).trials[0]
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["prune_reason"] == "diverged: cost nan at step 1"
    assert sorted(trial.intermediate_values) == [0, 1]


def test_maximizing_study_reports_cost_separately(tmp_path):
    path = _study(tmp_path, "accuracy_with_cost", direction="maximize")
    assert cli("run", path, "-q").exit_code == 0
    trial = load(path).trials[0]
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["prune_reason"].startswith("diverged: cost 9 > 3.0 × original 2")
    # the reported accuracies rise 0.5 -> 0.7 and are never mistaken for a cost
    assert trial.intermediate_values == {0: 0.5, 1: 0.6, 2: 0.7}


def test_divergence_off(tmp_path):
    path = _study(tmp_path, "nan_cost", extra="pruner: {divergence: false}")
    assert cli("run", path, "-q").exit_code == 0
    assert load(path).trials[0].state == TrialState.COMPLETE


MEDIAN = '''
import optuna


def objective(trial):
    # Trials with a larger x report higher (worse) costs at every step.
    x = trial.params["x"]
    for step in range(5):
        trial.report(x + 1.0 + 0.01 * step, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x
'''


def test_composition_with_median_names_the_pruner(tmp_path):
    path = write_study(tmp_path, study_yaml(
        n_trials=12, sampler="{type: grid}",
        extra="pruner: {early: {type: median, n_startup_trials: 3}}",
        space="x: {type: float, low: 0.0, high: 1.1, step: 0.1}"), objective=MEDIAN)
    assert cli("run", path, "-q").exit_code == 0
    trials = load(path).trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "the median pruner stopped nothing"
    for trial in pruned:
        assert trial.user_attrs["prune_reason"].startswith("median: stopped early at step 0")
    # Every pruned trial was worse than the median of the trials before it.
    for trial in pruned:
        earlier = [t.params["x"] for t in trials if t.number < trial.number][:trial.number]
        assert trial.params["x"] > sorted(earlier)[len(earlier) // 2 - 1]


def test_smoothed_rule_lets_a_spike_recover_and_stops_an_explosion():
    # Adam at a high learning rate: the loss of step 1 is 11x the first, then recovers.
    spike = [1.27, 14.3, 6.0, 3.1, 1.5] + [1.0 - 0.02 * i for i in range(40)]
    monitor = DivergenceMonitor(3.0, smoothing=0.98, warmup=20)
    assert all(monitor.check(cost, step) is None for step, cost in enumerate(spike))
    raw = DivergenceMonitor(3.0)
    assert [raw.check(cost, step) for step, cost in enumerate(spike[:2])][1] == (
        "diverged: cost 14.3 > 3.0 × original 1.27 at step 1")
    # An explosion: the loss keeps growing; stopped once warm-up has shown it is no spike.
    exploding = DivergenceMonitor(3.0, smoothing=0.98, warmup=20)
    reasons = [exploding.check(1.27 * 1.3 ** step, step) for step in range(40)]
    first = next(step for step, reason in enumerate(reasons) if reason)
    assert first == 20
    assert reasons[first].startswith("diverged: smoothed cost ")
    assert reasons[first].endswith(" > 3.0 × original 1.27 at step 20")


def test_smoothed_rule_stops_nan_and_inf_at_once_even_in_warm_up():
    for bad in (math.nan, math.inf):
        monitor = DivergenceMonitor(3.0, smoothing=0.98, warmup=20)
        assert monitor.check(2.0, 0) is None
        assert monitor.check(bad, 1) == f"diverged: cost {bad} at step 1"


def test_early_pruners_are_optunas_own_classes():
    # Optuna filters TPE's and tell's view to the trial's bracket only for a HyperbandPruner
    # instance: a wrapper around it would lose that.
    from optuna.pruners import (
        HyperbandPruner,
        MedianPruner,
        NopPruner,
        PercentilePruner,
        SuccessiveHalvingPruner,
    )

    from hpo.search.pruners import make_pruner
    from hpo.spec import PrunerSpec

    expected = {"median": MedianPruner, "hyperband": HyperbandPruner,
                "successive_halving": SuccessiveHalvingPruner, "none": NopPruner}
    for name, kind in expected.items():
        assert isinstance(make_pruner(PrunerSpec(early={"type": name})), kind)
    percentile = PrunerSpec(early={"type": "percentile", "percentile": 25.0})
    assert isinstance(make_pruner(percentile), PercentilePruner)
    assert isinstance(make_pruner(PrunerSpec()), NopPruner)


def test_hyperband_names_why_it_stopped_a_trial(tmp_path):
    path = write_study(tmp_path, study_yaml(
        n_trials=16, sampler="{type: tpe, seed: 0, n_startup_trials: 4}",
        extra="pruner: {early: {type: hyperband, min_resource: 1, max_resource: 5}}",
        space="x: {type: float, low: 0.0, high: 1.1}"), objective=MEDIAN)
    assert cli("run", path, "-q").exit_code == 0
    trials = load(path).trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "hyperband stopped nothing"
    for trial in pruned:
        assert trial.user_attrs["prune_reason"].startswith("hyperband: stopped early at step")


def test_the_old_import_path_of_the_divergence_pruner_still_works_and_says_where_it_went():
    import importlib
    import sys

    sys.modules.pop("hpo.pruners", None)
    with pytest.warns(DeprecationWarning, match="hpo.search.pruners"):
        old = importlib.import_module("hpo.pruners")
    from hpo.search.pruners import DivergencePruner

    assert old.DivergencePruner is DivergencePruner
