"""Torch's optimizers as functions of stacked parameters: one update for many members at once.

A packed model keeps each member's parameters in one row of a [members, P] tensor. Each member
has its own learning rate, momentum, weight decay and step count, held as [members, 1] columns;
these rules apply torch's update formulas (torch.optim's documented algorithms, their default
betas and epsilons) to every row at once, in a few tensor operations whatever the number of
members. `tests/training/test_packed_optim.py` checks each against torch's own optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from hpo.training.config import OptimizerName
from hpo.training.optim import DEFAULT_MOMENTUM

BETAS = (0.9, 0.999)
NADAM_MOMENTUM_DECAY = 4e-3


@dataclass
class Rows:
    """The hyperparameters of a block of members sharing one optimizer, one row each."""

    lr: torch.Tensor  # [n, 1], the learning rate of the current epoch
    momentum: torch.Tensor  # [n, 1]
    weight_decay: torch.Tensor  # [n, 1]
    step: torch.Tensor  # [n, 1], updates taken so far, this one included
    nesterov: bool = False
    # Whether any member has weight decay, momentum: without, their operations are skipped.
    decays: bool = True
    has_momentum: bool = True

    @classmethod
    def of(cls, lr: torch.Tensor, momentum: torch.Tensor, weight_decay: torch.Tensor,
           step: torch.Tensor, nesterov: bool = False) -> Rows:
        return cls(lr, momentum, weight_decay, step, nesterov,
                   decays=bool(weight_decay.any()), has_momentum=bool(momentum.any()))


State = dict[str, torch.Tensor]
Rule = Callable[[torch.Tensor, torch.Tensor, Rows, State], None]


def _powers(rows: Rows) -> torch.Tensor:
    # Bias corrections such as 1 - 0.999^t lose digits in float32 at small t: torch computes
    # them in Python floats, so the columns derived from the step count are float64 here.
    return rows.step.double()


def _l2(p: torch.Tensor, g: torch.Tensor, rows: Rows) -> torch.Tensor:
    # Torch's `weight_decay` (L2) adds decay x param to the gradient; AdamW decouples it.
    return g.add(p * rows.weight_decay) if rows.decays else g


def _zeros(state: State, name: str, like: torch.Tensor) -> torch.Tensor:
    if name not in state:
        state[name] = torch.zeros_like(like)
    return state[name]


def sgd(p: torch.Tensor, g: torch.Tensor, rows: Rows, state: State) -> None:
    g = _l2(p, g, rows)
    if not rows.has_momentum:
        p.sub_(g * rows.lr)
        return
    # A zero buffer makes the first step's buffer the gradient, as torch's does.
    buffer = _zeros(state, "momentum_buffer", p)
    buffer.mul_(rows.momentum).add_(g)
    direction = g.add(buffer * rows.momentum) if rows.nesterov else buffer
    p.sub_(direction * rows.lr)


def adagrad(p: torch.Tensor, g: torch.Tensor, rows: Rows, state: State) -> None:
    g = _l2(p, g, rows)
    squares = _zeros(state, "sum", p)
    squares.addcmul_(g, g)
    p.sub_(g / (squares.sqrt() + 1e-10) * rows.lr)


def rmsprop(p: torch.Tensor, g: torch.Tensor, rows: Rows, state: State) -> None:
    alpha = 0.99
    g = _l2(p, g, rows)
    square_avg = _zeros(state, "square_avg", p)
    square_avg.mul_(alpha).addcmul_(g, g, value=1 - alpha)
    if not rows.has_momentum:
        p.sub_(g / (square_avg.sqrt() + 1e-8) * rows.lr)
        return
    buffer = _zeros(state, "momentum_buffer", p)
    # Without momentum torch steps by g / avg: a zero momentum makes the buffer exactly that.
    buffer.mul_(rows.momentum).add_(g / (square_avg.sqrt() + 1e-8))
    p.sub_(buffer * rows.lr)


def adadelta(p: torch.Tensor, g: torch.Tensor, rows: Rows, state: State) -> None:
    rho, eps = 0.9, 1e-6
    g = _l2(p, g, rows)
    square_avg = _zeros(state, "square_avg", p)
    acc_delta = _zeros(state, "acc_delta", p)
    square_avg.mul_(rho).addcmul_(g, g, value=1 - rho)
    delta = (acc_delta + eps).sqrt_().div_((square_avg + eps).sqrt_()).mul_(g)
    acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
    p.sub_(delta * rows.lr)


def _moments(g: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor]:
    beta1, beta2 = BETAS
    exp_avg = _zeros(state, "exp_avg", g)
    exp_avg_sq = _zeros(state, "exp_avg_sq", g)
    exp_avg.lerp_(g, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    return exp_avg, exp_avg_sq


def _adam_step(p: torch.Tensor, g: torch.Tensor, rows: Rows, state: State) -> None:
    beta1, beta2 = BETAS
    exp_avg, exp_avg_sq = _moments(g, state)
    step = _powers(rows)
    bias_correction1 = (1 - beta1 ** step).to(p.dtype)
    bias_correction2_sqrt = (1 - beta2 ** step).sqrt().to(p.dtype)
    denom = exp_avg_sq.sqrt().div_(bias_correction2_sqrt).add_(1e-8)
    p.sub_(exp_avg / denom * (rows.lr / bias_correction1))


def adam(p: torch.Tensor, g: torch.Tensor, rows: Rows, state: State) -> None:
    _adam_step(p, _l2(p, g, rows), rows, state)


def adamw(p: torch.Tensor, g: torch.Tensor, rows: Rows, state: State) -> None:
    if rows.decays:
        p.mul_(1 - rows.lr * rows.weight_decay)
    _adam_step(p, g, rows, state)


def nadam(p: torch.Tensor, g: torch.Tensor, rows: Rows, state: State) -> None:
    beta1, beta2 = BETAS
    g = _l2(p, g, rows)
    step = _powers(rows)
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * NADAM_MOMENTUM_DECAY))
    mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * NADAM_MOMENTUM_DECAY))
    if "mu_product" not in state:
        state["mu_product"] = torch.ones_like(step)
    mu_product = state["mu_product"].mul_(mu)
    exp_avg, exp_avg_sq = _moments(g, state)
    denom = exp_avg_sq.div((1 - beta2 ** step).to(p.dtype)).sqrt_().add_(1e-8)
    p.sub_(g / denom * (rows.lr * ((1.0 - mu) / (1.0 - mu_product)).to(p.dtype)))
    p.sub_(exp_avg / denom
           * (rows.lr * (mu_next / (1.0 - mu_product * mu_next)).to(p.dtype)))


def radam(p: torch.Tensor, g: torch.Tensor, rows: Rows, state: State) -> None:
    beta1, beta2 = BETAS
    g = _l2(p, g, rows)
    exp_avg, exp_avg_sq = _moments(g, state)
    step = _powers(rows)
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    corrected_avg = exp_avg / bias_correction1.to(p.dtype)
    # The variance's rectification, defined once enough steps make it tractable (rho_t > 5).
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * (beta2 ** step) / bias_correction2
    tractable = rho_t > 5.0
    rect = torch.where(
        tractable,
        ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
        .clamp(min=0).sqrt(),
        torch.zeros_like(rho_t)).to(p.dtype)
    adaptive = bias_correction2.sqrt().to(p.dtype) / exp_avg_sq.sqrt().add_(1e-8)
    scale = torch.where(tractable, rect * adaptive, torch.ones_like(adaptive))
    p.sub_(corrected_avg * scale * rows.lr)


# Each of `hpo.training.optim.OPTIMIZERS`, as (rule, default momentum, nesterov).
RULES: dict[OptimizerName, tuple[Rule, float | None, bool]] = {
    "sgd": (sgd, None, False),
    "momentum": (sgd, DEFAULT_MOMENTUM, False),
    "nesterov": (sgd, DEFAULT_MOMENTUM, True),
    "adagrad": (adagrad, None, False),
    "rmsprop": (rmsprop, None, False),
    "adadelta": (adadelta, None, False),
    "adam": (adam, None, False),
    "adamw": (adamw, None, False),
    "nadam": (nadam, None, False),
    "radam": (radam, None, False),
}


def momentum_of(name: OptimizerName, momentum: float | None) -> float:
    """The momentum `make_optimizer(name, momentum=...)` would use (0 where it takes none)."""
    default = RULES[name][1]
    if name not in ("sgd", "momentum", "nesterov", "rmsprop"):
        return 0.0
    chosen = default if momentum is None else momentum
    return chosen or 0.0


def rule_of(name: OptimizerName, momentum: float) -> tuple[Rule, bool]:
    """The update rule of optimizer `name`, and whether it is Nesterov's (momentum > 0)."""
    rule, _, nesterov = RULES[name]
    return rule, nesterov and momentum > 0


def clip_rows(grad: torch.Tensor, max_norm: torch.Tensor) -> None:
    """Scale each row of `grad` to norm at most its `max_norm` (inf: no clipping), as
    `torch.nn.utils.clip_grad_norm_` does for one member's parameters."""
    norms = torch.linalg.vector_norm(grad, dim=1, keepdim=True)
    grad.mul_((max_norm / (norms + 1e-6)).clamp_(max=1.0))
