"""The objective section: a callable, or the built-in mlp trainer and its settings."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_serializer, model_validator

from hpo.spec.base import Problems, Strict, did_you_mean
from hpo.spec.limits import TRAINER_LIMITS, range_problems, value_problem
from hpo.spec.space import CategoricalParam
from hpo.training.config import (
    METRIC_DIRECTIONS,
    ActivationName,
    DataConfig,
    DatasetName,
    DeviceName,
    InitializerName,
    LrScheduleName,
    NormalizationName,
    OptimizerName,
    TrainConfig,
)

# The built-in trainer's names and defaults are `hpo.training.config`'s (free of torch, so the
# spec stays importable without it); the fields below take their defaults from these.
DATASETS = get_args(DatasetName)
NORMALIZATIONS = get_args(NormalizationName)
ACTIVATIONS = get_args(ActivationName)
INITIALIZERS = get_args(InitializerName)
OPTIMIZERS = get_args(OptimizerName)
LR_SCHEDULES = get_args(LrScheduleName)
TRAINER_METRICS = METRIC_DIRECTIONS
_DATA = DataConfig()
_TRAIN = TrainConfig()


def _bounded(name: str, default: Any) -> Any:
    """A trainer field's default, bounded by the trainer's hard limits (`hpo.spec.limits`):
    a fixed value obeys the same bounds as a searched one."""
    return Field(default=default, **TRAINER_LIMITS[name].field())


class DataSpec(Strict):
    dataset: DatasetName | None = _DATA.dataset
    path: str | None = _DATA.path  # a CSV with a header, or an NPZ with arrays X and y
    label: str | None = _DATA.label  # the CSV's label column
    normalize: NormalizationName = _DATA.normalize
    val_fraction: float = Field(default=_DATA.val_fraction, gt=0, lt=1)
    seed: int = _DATA.seed
    # The synthetic dataset's shape.
    n_samples: int = Field(default=_DATA.n_samples, ge=10)
    n_features: int = Field(default=_DATA.n_features, ge=2)
    n_classes: int = Field(default=_DATA.n_classes, ge=2)

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of dataset (a built-in name) or path (a file)")
        if self.path and self.path.endswith(".csv") and not self.label:
            raise ValueError("a CSV file needs label: the name of its label column")
        if self.path and not self.path.endswith((".csv", ".npz")):
            raise ValueError(f"path must be a .csv or .npz file, got {self.path!r}")
        return self


class ModelSpec(Strict):
    hidden: list[int] = Field(default=_TRAIN.hidden)
    activation: ActivationName = _TRAIN.activation
    batch_norm: bool = _TRAIN.batch_norm
    dropout: float = _bounded("dropout", _TRAIN.dropout)
    initializer: InitializerName = _TRAIN.initializer

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, hidden: list[int]) -> list[int]:
        if not all(TRAINER_LIMITS["hidden_units"].allows(width) for width in hidden):
            raise ValueError(f"every hidden layer needs at least 1 unit, got {hidden}")
        return hidden


class TrainSpec(Strict):
    epochs: int = _bounded("epochs", _TRAIN.epochs)
    batch_size: int = _bounded("batch_size", _TRAIN.batch_size)
    lr: float = _bounded("lr", _TRAIN.lr)
    optimizer: OptimizerName = _TRAIN.optimizer
    # None: 0.9 for momentum/nesterov
    momentum: float | None = _bounded("momentum", _TRAIN.momentum)
    weight_decay: float = _bounded("weight_decay", _TRAIN.weight_decay)
    # multiply lr by this per epoch
    lr_decay: float | None = _bounded("lr_decay", _TRAIN.lr_decay)
    lr_schedule: LrScheduleName = _TRAIN.lr_schedule
    # the step schedule's period
    lr_step_epochs: int = Field(default=_TRAIN.lr_step_epochs, ge=1)
    grad_clip: float | None = _bounded("grad_clip", _TRAIN.grad_clip)
    early_stop_patience: int | None = _bounded("early_stop_patience", _TRAIN.early_stop_patience)
    device: DeviceName = _TRAIN.device
    threads: int | None = Field(default=_TRAIN.threads, ge=1)
    seed: int = _TRAIN.seed
    # Trials a worker trains at once, those of one model shape and batch size as one stacked
    # model (`hpo.training.pack`); `auto`: where measured to pay (`hpo.worker.packing`).
    pack: int | Literal["auto"] = Field(default="auto")

    @field_validator("pack", mode="before")
    @classmethod
    def _pack_is_auto_or_a_count(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool)
                               and value >= 1):
            return value
        raise ValueError(f"pack must be auto or a number of trials at least 1 (1 trains one "
                         f"at a time), but got {value!r}")


class ObjectiveSpec(Strict):
    # "package.module:function", or "path/to/file.py:function" relative to the study file.
    callable: str | None = Field(default=None, pattern=r"^[^:\s]+:[A-Za-z_][A-Za-z0-9_]*$")
    trainer: Literal["mlp"] | None = None
    data: DataSpec | None = None
    model: ModelSpec = ModelSpec()
    train: TrainSpec = TrainSpec()

    @model_validator(mode="after")
    def _callable_or_trainer(self) -> ObjectiveSpec:
        if (self.callable is None) == (self.trainer is None):
            raise ValueError("give exactly one of callable (your function) or trainer: mlp")
        if self.trainer and self.data is None:
            raise ValueError("trainer: mlp needs data, e.g. data: {dataset: digits}")
        trainer_sections = sorted({"data", "model", "train"} & self.model_fields_set)
        if self.callable and trainer_sections:
            # Silently ignored, a user's `epochs: 5` would do nothing.
            listed = " and ".join(trainer_sections)
            verb = "configure" if len(trainer_sections) > 1 else "configures"
            raise ValueError(f"{listed} {verb} the built-in trainer (trainer: mlp), not a "
                             f"callable; remove {listed}, or read such settings in your function")
        return self

    @model_serializer(mode="wrap")
    def _without_unused_sections(self, handler: Any) -> dict[str, Any]:
        # A callable's spec, printed or stored, must validate again: the trainer's sections
        # (at their defaults) would be refused beside it.
        data = handler(self)
        if self.callable:
            for section in ("data", "model", "train"):
                data.pop(section, None)
        return data


# Search-space names the built-in trainer consumes, beyond the fields of model and train.
TRAINER_EXTRA_PARAMS = ("hidden_units", "n_layers")
TRAINER_PARAMS = tuple(
    n for n in (*ModelSpec.model_fields, *TrainSpec.model_fields, *TRAINER_EXTRA_PARAMS)
    if n not in ("device", "threads", "seed", "lr_schedule", "lr_step_epochs", "pack")
)


def check_trainer(metric: str, direction: str, space: dict[str, Any],
                   problems: Problems) -> None:
    expected = TRAINER_METRICS.get(metric)
    if expected is None:
        problems.append(f"metric: the mlp trainer reports {', '.join(TRAINER_METRICS)}; got "
                        f"{metric!r}")
    elif direction != expected:
        problems.append(f"direction: {metric} needs direction: {expected}")
    for name, entry in space.items():
        with problems.collecting():
            _check_trainer_entry(name, entry)
    if "hidden" in space and {"hidden_units", "n_layers"} & set(space):
        problems.append("search_space: search hidden, or hidden_units and n_layers, not both")


def _check_trainer_entry(name: str, entry: Any) -> None:
    if name not in TRAINER_PARAMS:
        raise ValueError(f"search_space.{name}: the mlp trainer does not use {name!r}; "
                         f"{did_you_mean(name, list(TRAINER_PARAMS))}it uses: "
                         f"{', '.join(TRAINER_PARAMS)}")
    # Every value the entry can take, against the trainer's limits (`hpo.spec.limits`).
    if isinstance(entry, CategoricalParam):
        problems = [f"search_space.{name}.choices: {problem}" for choice in entry.choices
                    if (problem := value_problem(name, choice, "drop that choice")) is not None]
    else:
        problems = range_problems(name, entry)
    if problems:
        raise ValueError("\n".join(problems))
