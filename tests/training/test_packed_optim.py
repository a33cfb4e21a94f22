"""Each stacked optimizer rule against torch's own optimizer, member by member."""

from __future__ import annotations

import math

import pytest
import torch

from hpo.training.config import lr_after
from hpo.training.optim import OPTIMIZERS, make_optimizer
from hpo.training.packed_optim import RULES, Rows, clip_rows, momentum_of, rule_of

# Three members: their own learning rate, momentum (None: the optimizer's default) and decay.
MIXED = [(0.01, None, 0.0), (0.003, 0.5, 1e-2), (0.05, 0.0, 1e-3)]
PLAIN = [(0.01, 0.0, 0.0), (0.05, 0.0, 0.0)]  # no momentum, no decay: those steps skipped


@pytest.mark.parametrize("members", [MIXED, PLAIN], ids=["mixed", "plain"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_rule_updates_each_member_as_torch_updates_it_alone(name: str, members) -> None:
    torch.manual_seed(0)
    start = torch.randn(len(members), 12)
    gradients = [torch.randn(len(members), 12) for _ in range(15)]

    alone = []
    for i, (lr, momentum, decay) in enumerate(members):
        param = torch.nn.Parameter(start[i].clone())
        optimizer = make_optimizer(name, [param], lr, momentum, decay)
        for grad in gradients:
            param.grad = grad[i].clone()
            optimizer.step()
        alone.append(param.detach())

    # Members of one rule with different momenta split by Nesterov-or-not, as a pack does.
    params = start.clone()
    state: dict[str, torch.Tensor] = {}
    momenta = [momentum_of(name, m) for _, m, _ in members]
    rule, _ = rule_of(name, 0.9)
    nesterov = [rule_of(name, m)[1] for m in momenta]
    steps = torch.zeros(len(members), 1)
    for grad in gradients:
        steps += 1
        for flag in set(nesterov):
            rows = [i for i, n in enumerate(nesterov) if n == flag]
            sub_state = state.setdefault(str(flag), {})
            block = params[rows]
            rule(block, grad[rows].clone(),
                 Rows.of(torch.tensor([[members[i][0]] for i in rows]),
                      torch.tensor([[momenta[i]] for i in rows]),
                      torch.tensor([[members[i][2]] for i in rows]), steps[rows], flag),
                 sub_state)
            params[rows] = block
    for i in range(len(members)):
        torch.testing.assert_close(params[i], alone[i], rtol=1e-5, atol=1e-6)


def test_every_optimizer_has_a_rule() -> None:
    assert set(RULES) == set(OPTIMIZERS)


def test_rows_are_clipped_to_their_own_norm_as_torch_clips_a_model() -> None:
    torch.manual_seed(1)
    grads = torch.randn(3, 20) * torch.tensor([[0.1], [5.0], [50.0]])
    expected = []
    for i, max_norm in enumerate([1.0, 1.0, math.inf]):
        param = torch.nn.Parameter(torch.zeros(20))
        param.grad = grads[i].clone()
        torch.nn.utils.clip_grad_norm_([param], max_norm)
        expected.append(param.grad)
    clip_rows(grads, torch.tensor([[1.0], [1.0], [math.inf]]))
    torch.testing.assert_close(grads, torch.stack(expected))
    assert grads[1].norm() == pytest.approx(1.0, rel=1e-4)  # clipped
    assert grads[2].norm() > 100  # no limit: untouched


@pytest.mark.parametrize("schedule, decay", [("exponential", 0.9), ("exponential", None),
                                             ("step", 0.5), ("cosine", None)])
def test_the_learning_rate_after_each_epoch_is_the_torch_schedulers(schedule: str,
                                                                   decay: float | None) -> None:
    optimizer = make_optimizer("sgd", [torch.nn.Parameter(torch.zeros(1))], 0.1)
    schedulers = torch.optim.lr_scheduler
    scheduler = {
        "cosine": lambda: schedulers.CosineAnnealingLR(optimizer, T_max=10),
        "step": lambda: schedulers.StepLR(optimizer, 3, gamma=decay),
        "exponential": lambda: schedulers.ExponentialLR(optimizer, gamma=decay) if decay else None,
    }[schedule]()
    for epoch in range(10):
        got = lr_after(epoch, 0.1, schedule, decay, 3, 10)
        assert got == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9, abs=1e-12)
        if scheduler is not None:
            optimizer.step()  # no gradient: no update, but the scheduler expects a step first
            scheduler.step()
