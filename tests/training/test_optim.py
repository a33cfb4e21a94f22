from __future__ import annotations

import pytest
import torch

from hpo.training.optim import OPTIMIZERS, make_optimizer


def params():
    return [torch.nn.Parameter(torch.zeros(3))]


@pytest.mark.parametrize(("name", "momentum", "nesterov"), [
    ("sgd", 0.0, False), ("momentum", 0.9, False), ("nesterov", 0.9, True),
])
def test_sgd_family_momentum_defaults(name, momentum, nesterov):
    group = make_optimizer(name, params(), 0.1).param_groups[0]
    assert group["momentum"] == momentum
    assert group["nesterov"] is nesterov


def test_searched_momentum_and_weight_decay_reach_the_optimizer():
    group = make_optimizer("momentum", params(), 0.1, momentum=0.5, weight_decay=1e-3)
    group = group.param_groups[0]
    assert group["momentum"] == 0.5 and group["weight_decay"] == 1e-3
    rmsprop = make_optimizer("rmsprop", params(), 0.1, momentum=0.7)
    assert rmsprop.param_groups[0]["momentum"] == 0.7


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_takes_a_step_with_the_learning_rate(name):
    optimizer = make_optimizer(name, params(), 0.25)
    assert optimizer.param_groups[0]["lr"] == 0.25
    optimizer.param_groups[0]["params"][0].grad = torch.ones(3)
    optimizer.step()
    assert optimizer.param_groups[0]["params"][0].detach().abs().sum() > 0
