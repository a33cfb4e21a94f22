"""Optimizers by name; momentum and weight decay apply where the optimizer has them."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

DEFAULT_MOMENTUM = 0.9

Factory = Callable[[Iterable[torch.nn.Parameter], float, float | None, float],
                   torch.optim.Optimizer]


def _sgd(momentum_default: float, nesterov: bool = False) -> Factory:
    def make(params, lr, momentum, weight_decay):
        m = momentum_default if momentum is None else momentum
        return torch.optim.SGD(params, lr=lr, momentum=m, nesterov=nesterov and m > 0,
                               weight_decay=weight_decay)
    return make


OPTIMIZERS: dict[str, Factory] = {
    "sgd": lambda p, lr, m, wd: torch.optim.SGD(p, lr=lr, momentum=m or 0.0, weight_decay=wd),
    "momentum": _sgd(DEFAULT_MOMENTUM),
    "nesterov": _sgd(DEFAULT_MOMENTUM, nesterov=True),
    "adagrad": lambda p, lr, m, wd: torch.optim.Adagrad(p, lr=lr, weight_decay=wd),
    "rmsprop": lambda p, lr, m, wd: torch.optim.RMSprop(p, lr=lr, momentum=m or 0.0,
                                                        weight_decay=wd),
    "adadelta": lambda p, lr, m, wd: torch.optim.Adadelta(p, lr=lr, weight_decay=wd),
    "adam": lambda p, lr, m, wd: torch.optim.Adam(p, lr=lr, weight_decay=wd),
    "adamw": lambda p, lr, m, wd: torch.optim.AdamW(p, lr=lr, weight_decay=wd),
    "nadam": lambda p, lr, m, wd: torch.optim.NAdam(p, lr=lr, weight_decay=wd),
    "radam": lambda p, lr, m, wd: torch.optim.RAdam(p, lr=lr, weight_decay=wd),
}


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, momentum: float | None = None,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """The optimizer `name`; `momentum` None means 0.9 for momentum and nesterov, else none."""
    return OPTIMIZERS[name](params, lr, momentum, weight_decay)
