"""The MLP: linear -> [batch norm] -> activation -> [dropout] per hidden layer, then a head."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from hpo.training.config import ActivationName

ACTIVATIONS: dict[ActivationName, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


class MLP(nn.Module):
    def __init__(
        self, n_in: int, hidden: list[int], n_out: int, activation: ActivationName = "relu",
        batch_norm: bool = False, dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            # Batch norm after the linear map, before the activation; its shift makes a bias
            # redundant.
            layers.append(nn.Linear(n_in, width, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            n_in = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(n_in, n_out)

    def forward(self, x):
        return self.head(self.body(x))
