"""`hpo lr-find`: the LR range test, read on a log(lr) axis over several seeds."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hpo.training.data import Dataset
from hpo.training.loop import TrainConfig, build
from hpo.training.probes import LrCurve, lr_range_test
from hpo.wisdom.lr_find import pick
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


def test_the_steepest_fall_is_read_against_log_lr():
    # A loss that falls as a logistic in log10(lr), steepest at lr 1e-3 on that axis, over a
    # ramp of 1e-6 .. 1 (against a linear lr the steepest slope would be elsewhere).
    lrs = [1e-6 * (1e6 ** (i / 99)) for i in range(100)]
    losses = [1 + 2 / (1 + math.exp(3 * (math.log10(lr) + 3))) for lr in lrs]
    chosen = pick(LrCurve(lrs, losses, losses, None), seed=0)
    assert 3e-4 < chosen.steepest < 3e-3
    assert chosen.minimum == lrs[-1]
