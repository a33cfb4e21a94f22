"""Weight initializers by name, each with the variance TRAINING.md gives from a layer's fans."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch
from torch import nn

from hpo.training.config import InitializerName

logger = logging.getLogger("hpo")


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    fan_out, fan_in = weight.shape  # nn.Linear stores (out, in)
    return fan_in, fan_out


def _normal(std: Callable[[int, int], float]) -> Callable[[torch.Tensor], None]:
    def init(weight: torch.Tensor) -> None:
        nn.init.normal_(weight, 0.0, std(*_fans(weight)))
    return init


def _uniform(variance: Callable[[int, int], float]) -> Callable[[torch.Tensor], None]:
    # U(-a, a) has variance a^2 / 3.
    def init(weight: torch.Tensor) -> None:
        bound = math.sqrt(3.0 * variance(*_fans(weight)))
        nn.init.uniform_(weight, -bound, bound)
    return init


INITIALIZERS: dict[InitializerName, Callable[[torch.Tensor], None]] = {
    "zeros": nn.init.zeros_,
    "normal": _normal(lambda fan_in, fan_out: 1.0),                  # N(0, 1)
    "small_normal": _normal(lambda fan_in, fan_out: 0.01),           # N(0, 0.01^2)
    "uniform": _uniform(lambda fan_in, fan_out: 1.0 / (3 * fan_in)),  # U(+-1/sqrt(fan_in))
    "xavier_uniform": _uniform(lambda fan_in, fan_out: 2.0 / (fan_in + fan_out)),
    "xavier_normal": _normal(lambda fan_in, fan_out: math.sqrt(2.0 / (fan_in + fan_out))),
    "lecun_uniform": _uniform(lambda fan_in, fan_out: 1.0 / fan_in),
    "lecun_normal": _normal(lambda fan_in, fan_out: math.sqrt(1.0 / fan_in)),
    "he_uniform": _uniform(lambda fan_in, fan_out: 2.0 / fan_in),
    "he_normal": _normal(lambda fan_in, fan_out: math.sqrt(2.0 / fan_in)),
}


def initialize(model: nn.Module, name: InitializerName) -> None:
    """Initialize every linear layer's weights by `name`; biases start at zero."""
    if name == "zeros":
        logger.warning("initializer zeros: every unit of a layer gets the same gradient, so "
                       "they never differ (symmetry); the network cannot learn")
    init = INITIALIZERS[name]
    for module in model.modules():
        if isinstance(module, nn.Linear):
            init(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
