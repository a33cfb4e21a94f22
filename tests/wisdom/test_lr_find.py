"""`hpo lr-find`: the LR range test, read on a log(lr) axis over several seeds, and its
suggestion held to the best constant lr found exhaustively (`lr_find.reference`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from hpo.spec import parse_spec
from hpo.training.data import Dataset
from hpo.training.divergence import MovingAverage
from hpo.training.loop import TrainConfig, build
from hpo.training.probes import LrCurve, log_grid, lr_range_test
from hpo.wisdom.lr_find import CURVE_SMOOTHING, find_lr, pick, reference
from tests.conftest import cli, write_study
from tests.wisdom.test_check import HEALTHY


def test_lr_find_suggests_a_range_below_the_divergence_point(tmp_path):
    path = write_study(tmp_path, HEALTHY.replace("train: {epochs: 2}",
                                                 "train: {epochs: 2, optimizer: sgd}"))
    plot = tmp_path / "lr.html"
    result = cli("lr-find", path, "--json", "--out", plot)
    assert result.exit_code == 0, result.output
    found = json.loads(result.output[:result.output.rindex("}") + 1])
    assert set(found) == {"low", "high", "suggested", "diverged_at", "seeds"}
    assert len(found["seeds"]) == 3
    for seed in found["seeds"]:
        assert set(seed) == {"seed", "suggested", "steepest", "minimum", "diverged_at"}
        assert seed["steepest"] == seed["suggested"]  # the old name, kept for scripts
    assert found["low"] < found["suggested"] < found["high"]
    assert found["diverged_at"] is not None  # the ramp reaches lr 300 with plain SGD
    assert found["high"] < found["diverged_at"]
    assert "LR range test" in plot.read_text()
    text = cli("lr-find", path, "--seeds", "2").output
    assert "lr: {type: float, low: " in text and "log: true}" in text


def test_the_range_test_restores_model_and_optimizer():
    x = torch.randn(64, 5)
    y = (x[:, 0] > 0).long()
    data = Dataset(x.numpy(), y.numpy(), x.numpy(), y.numpy(), ["a", "b"])
    model, optimizer = build(TrainConfig(hidden=[8], optimizer="momentum"), data,
                             torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    curve = lr_range_test(model, optimizer, x, y, 1e-4, 100.0, 60, 16, 3.0)
    assert curve.lrs and curve.lrs[1] / curve.lrs[0] > 1
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    assert optimizer.state == {}  # no momentum left behind
    assert optimizer.lr == pytest.approx(1e-3)  # the lr it was built with, not the ramp's


def _smoothed(losses: list[float]) -> list[float]:
    average = MovingAverage(CURVE_SMOOTHING)
    return [average.add(loss) for loss in losses]


def test_the_pick_is_where_most_of_a_sustained_fall_is_made():
    # Flat at 2.6 with a noisy start (the first batches 3.5 and 1.8: the average's steepest
    # drop), then a fall in log10(lr) to 0.5 from lr 1e-2 to 1, then a rise.
    lrs = [1e-5 * (1e6 ** (i / 99)) for i in range(100)]
    losses = [0.5 + 2.1 / (1 + math.exp(4 * (math.log10(lr) + 1))) if lr < 1
              else 0.5 + 2 * math.log10(lr) for lr in lrs]
    losses[0], losses[1] = 3.5, 1.8
    smoothed = _smoothed(losses)
    chosen = pick(LrCurve(lrs, losses, smoothed, None), seed=0)
    lowest = min(range(10, 100), key=smoothed.__getitem__)
    assert chosen.minimum == lrs[lowest]
    # The first lr at which the average has made 90% of its fall from the plateau.
    top = max(smoothed[10:lowest])
    first = next(i for i in range(10, 100) if smoothed[i] <= top - 0.9 * (top - smoothed[lowest]))
    assert chosen.suggested == lrs[first]
    assert 0.1 < chosen.suggested < chosen.minimum


def test_a_curve_that_never_falls_picks_from_after_the_noisy_start():
    lrs = [1e-5 * (1e6 ** (i / 49)) for i in range(50)]
    losses = [2.3 + 0.05 * math.sin(7 * i) for i in range(50)]
    losses[0] = 9.0  # a first batch far off: its average falls steeply for a few steps
    chosen = pick(LrCurve(lrs, losses, _smoothed(losses), None), seed=0)
    assert chosen.suggested >= lrs[10]


# The best constant lr, found the slow way, against the range test's pick. Each setup's
# reference trains every lr of a 4-per-decade grid across the ramp's range for its 100 steps.
ROOT = Path(__file__).resolve().parents[2]
SETUPS = {
    # SGD with batch norm: studies/digits-lr.yaml as shipped.
    "digits-lr": None,
    "synthetic-momentum": {
        "data": {"dataset": "synthetic", "n_samples": 3000, "n_features": 20, "n_classes": 3},
        "model": {"hidden": [64, 64]}, "train": {"optimizer": "momentum"},
        "lr": (1e-4, 1e-1)},
    "breast_cancer-adam": {
        "data": {"dataset": "breast_cancer"}, "model": {"hidden": [64]},
        "train": {"optimizer": "adam", "batch_size": 32}, "lr": (1e-4, 1e-2)},
}


def _study(name: str):
    setup = SETUPS[name]
    if setup is None:
        path = ROOT / "studies" / "digits-lr.yaml"
        data = yaml.safe_load(path.read_text())
    else:
        path = Path(f"{name}.yaml")
        low, high = setup["lr"]
        data = {"name": name, "direction": "maximize", "metric": "val_accuracy", "n_trials": 1,
                "objective": {"trainer": "mlp", "data": setup["data"], "model": setup["model"],
                              "train": dict(setup["train"])},
                "search_space": {"lr": {"type": "float", "low": low, "high": high,
                                        "log": True}}}
    data["objective"].setdefault("train", {})["threads"] = 1  # fast and the same on any box
    return parse_spec(data, path)


@pytest.mark.parametrize("name", list(SETUPS))
def test_the_suggestion_is_near_the_best_constant_lr_and_below_divergence(name):
    spec = _study(name)
    found = find_lr(spec, {}, seeds=3)
    sweeps = reference(spec, {}, seeds=3)
    for chosen, sweep in zip(found.seeds, sweeps, strict=True):
        where = (f"{name} seed {chosen.seed}: suggested {chosen.suggested:.3g}, best "
                 f"{sweep.best:.3g}, diverged at {sweep.diverged_at}")
        assert 1 / 3 <= chosen.suggested / sweep.best <= 3, where
        assert sweep.diverged_at is None or chosen.suggested < sweep.diverged_at, where
        assert found.suggested < (sweep.diverged_at or math.inf), where
        assert 1 / 3 <= found.suggested / sweep.best <= 3, where


def test_the_reference_sweep_finds_the_best_lr_and_the_divergence_point():
    spec = _study("synthetic-momentum")
    sweep = reference(spec, {}, seeds=1, per_decade=2)[0]
    assert [round(math.log10(p.lr), 6) for p in sweep.points] == [
        round(math.log10(lr), 6) for lr in log_grid(1e-5, 10.0, 2)]
    finite = [p for p in sweep.points if not p.diverged]
    assert sweep.best == min(finite, key=lambda p: p.loss).lr
    stopped = [p for p in sweep.points if p.diverged]
    assert stopped and sweep.diverged_at == stopped[0].lr
    assert all(p.loss == math.inf for p in stopped)
    assert sweep.points[0].loss > 2 * min(p.loss for p in finite)  # 1e-5 barely trains
