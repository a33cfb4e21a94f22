from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

from hpo import spec
from hpo.training.init import INITIALIZERS, initialize
from hpo.training.model import ACTIVATIONS, MLP
from hpo.training.optim import OPTIMIZERS

FAN_IN, FAN_OUT = 800, 600
EXPECTED_VARIANCE = {
    "normal": 1.0,
    "small_normal": 0.01 ** 2,
    "uniform": 1.0 / (3 * FAN_IN),
    "xavier_uniform": 2.0 / (FAN_IN + FAN_OUT),
    "xavier_normal": 2.0 / (FAN_IN + FAN_OUT),
    "lecun_uniform": 1.0 / FAN_IN,
    "lecun_normal": 1.0 / FAN_IN,
    "he_uniform": 2.0 / FAN_IN,
    "he_normal": 2.0 / FAN_IN,
}


def test_registries_match_the_spec_names():
    assert tuple(INITIALIZERS) == spec.INITIALIZERS
    assert tuple(OPTIMIZERS) == spec.OPTIMIZERS
    assert tuple(ACTIVATIONS) == spec.ACTIVATIONS


@pytest.mark.parametrize("name", sorted(EXPECTED_VARIANCE))
def test_variance_from_the_layer_fans(name):
    torch.manual_seed(0)
    layer = nn.Linear(FAN_IN, FAN_OUT)
    INITIALIZERS[name](layer.weight)
    weights = layer.weight.detach()
    # 480,000 draws: the sample variance is within 1% of the true one with overwhelming odds.
    assert weights.var().item() == pytest.approx(EXPECTED_VARIANCE[name], rel=0.02)
    assert abs(weights.mean().item()) < 5 * math.sqrt(EXPECTED_VARIANCE[name] / weights.numel())
    if name.endswith("uniform"):
        bound = math.sqrt(3 * EXPECTED_VARIANCE[name])
        assert weights.abs().max().item() <= bound


def test_biases_start_at_zero_and_every_layer_is_initialized():
    torch.manual_seed(0)
    model = MLP(64, [256, 128], 10)
    initialize(model, "he_normal")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    for layer in linears:
        assert torch.count_nonzero(layer.bias) == 0
        fan_in = layer.weight.shape[1]
        assert layer.weight.var().item() == pytest.approx(2.0 / fan_in, rel=0.15)


def test_zeros_warns_about_symmetry(caplog):
    model = MLP(8, [4], 2)
    with caplog.at_level(logging.WARNING, logger="hpo"):
        initialize(model, "zeros")
    assert "symmetry" in caplog.text
    assert all(torch.count_nonzero(p) == 0 for p in model.parameters() if p.dim() == 2)
