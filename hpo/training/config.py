"""The trainer's contracts, free of torch and numpy: the names it knows, its config dataclasses
(the one home of their defaults) and why a run stopped.

Each name list is a `Literal` here, once: the registries behind the names are keyed by it (a
test holds them to it), and the spec's trainer section types its fields with it and takes its
defaults from a default config, so the spec stays importable without torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from hpo.training.divergence import DEFAULT_FACTOR

DatasetName = Literal["digits", "iris", "wine", "breast_cancer", "synthetic"]
NormalizationName = Literal["standard", "center", "minmax", "none"]
ActivationName = Literal["relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid"]
InitializerName = Literal[
    "zeros", "normal", "small_normal", "uniform", "xavier_uniform", "xavier_normal",
    "lecun_uniform", "lecun_normal", "he_uniform", "he_normal",
]
OptimizerName = Literal[
    "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "nadam",
    "radam",
]
LrScheduleName = Literal["exponential", "step", "cosine"]
DeviceName = Literal["auto", "cpu", "cuda"]
MetricName = Literal["val_accuracy", "val_loss", "train_loss"]

# The direction in which each metric the trainer reports gets better.
METRIC_DIRECTIONS: dict[MetricName, Literal["maximize", "minimize"]] = {
    "val_accuracy": "maximize", "val_loss": "minimize", "train_loss": "minimize",
}

# Why a run ended: all its epochs, the divergence rule, its reporter (`should_stop`), or early
# stopping (no better val_loss for `early_stop_patience` epochs).
Stop = Literal["done", "diverged", "reporter", "early"]


@dataclass(frozen=True)
class DataConfig:
    """The training data: a built-in dataset or a file, and its split and normalization."""

    dataset: DatasetName | None = None
    path: str | None = None  # a CSV with a header, or an NPZ with arrays X and y
    label: str | None = None  # the CSV's label column
    normalize: NormalizationName = "standard"
    val_fraction: float = 0.2
    seed: int = 0
    # The synthetic dataset's shape.
    n_samples: int = 2000
    n_features: int = 20
    n_classes: int = 2


@dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter of one training run, resolved from the spec and a trial."""

    hidden: list[int] = field(default_factory=lambda: [128, 128])
    activation: ActivationName = "relu"
    batch_norm: bool = False
    dropout: float = 0.0
    initializer: InitializerName = "he_normal"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: OptimizerName = "adam"
    momentum: float | None = None  # None: 0.9 for momentum and nesterov, else none
    weight_decay: float = 0.0
    lr_decay: float | None = None  # multiply lr by this per epoch
    lr_schedule: LrScheduleName = "exponential"
    lr_step_epochs: int = 10  # the step schedule's period
    grad_clip: float | None = None
    early_stop_patience: int | None = None
    device: DeviceName = "auto"
    threads: int | None = None
    seed: int = 0
    metric: MetricName = "val_accuracy"
    divergence_factor: float | None = DEFAULT_FACTOR

    def lr_after(self, epochs_done: int) -> float:
        """The learning rate after `epochs_done` epochs, by this config's schedule."""
        return lr_after(epochs_done, self.lr, self.lr_schedule, self.lr_decay,
                        self.lr_step_epochs, self.epochs)


def lr_after(epochs_done: int, lr: float, schedule: LrScheduleName, decay: float | None,
             step_epochs: int, total_epochs: int) -> float:
    """The learning rate after `epochs_done` epochs, as torch's scheduler for the same
    settings gives it."""
    if schedule == "cosine":
        return lr * (1 + math.cos(math.pi * epochs_done / total_epochs)) / 2
    if schedule == "step":
        return lr * (decay or 0.1) ** (epochs_done // step_epochs)
    if decay is not None:
        return lr * decay ** epochs_done
    return lr
