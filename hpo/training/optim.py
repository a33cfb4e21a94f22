"""Optimizers by name, as torch's optimizer classes; momentum and weight decay apply where the
optimizer has them.

What each name means: the trainer steps with `hpo.training.packed_optim`'s rules, which are
tested against these step by step (and which spare a process torch's optimizer classes, whose
first use imports torch._dynamo). A plain-torch script, such as a benchmark's baseline, makes
the same optimizer from here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import torch

from hpo.training.config import OptimizerName

DEFAULT_MOMENTUM = 0.9

Factory = Callable[[Iterable[torch.nn.Parameter], float, float | None, float],
                   torch.optim.Optimizer]


def _fast(optimizer_class: type[torch.optim.Optimizer]) -> dict[str, Any]:
    # One fused kernel per step (SGD, Adam, AdamW, Adagrad) or one multi-tensor op per
    # parameter group: small networks spend most of a step in per-tensor overhead.
    parameters = inspect.signature(optimizer_class).parameters
    return {"fused": True} if "fused" in parameters else {"foreach": True}


def _make(optimizer_class: type[torch.optim.Optimizer], momentum_default: float | None = None,
          nesterov: bool = False) -> Factory:
    takes_momentum = "momentum" in inspect.signature(optimizer_class).parameters

    def make(params, lr, momentum, weight_decay):
        options: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay,
                                   **_fast(optimizer_class)}
        if takes_momentum:
            chosen = momentum_default if momentum is None else momentum
            options["momentum"] = chosen or 0.0
            if nesterov:
                options["nesterov"] = options["momentum"] > 0
        return optimizer_class(params, **options)
    return make


OPTIMIZERS: dict[OptimizerName, Factory] = {
    "sgd": _make(torch.optim.SGD),
    "momentum": _make(torch.optim.SGD, DEFAULT_MOMENTUM),
    "nesterov": _make(torch.optim.SGD, DEFAULT_MOMENTUM, nesterov=True),
    "adagrad": _make(torch.optim.Adagrad),
    "rmsprop": _make(torch.optim.RMSprop),
    "adadelta": _make(torch.optim.Adadelta),
    "adam": _make(torch.optim.Adam),
    "adamw": _make(torch.optim.AdamW),
    "nadam": _make(torch.optim.NAdam),
    "radam": _make(torch.optim.RAdam),
}


def make_optimizer(
    name: OptimizerName, params: Iterable[torch.nn.Parameter], lr: float,
    momentum: float | None = None, weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """The optimizer `name`; `momentum` None means 0.9 for momentum and nesterov, else none.

    Momentum applies to the SGD family and RMSprop; the others have none to set.
    """
    return OPTIMIZERS[name](params, lr, momentum, weight_decay)
