"""The built-in trainer's setup for a probe: the file's fixed values, with overrides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpo.errors import HpoError
from hpo.spec import (
    TRAINER_PARAMS,
    DivergenceSpec,
    FloatParam,
    did_you_mean,
    parse_assignments,
    value_problem,
)

if TYPE_CHECKING:
    from hpo.spec import StudySpec
    from hpo.training.config import TrainConfig
    from hpo.training.data import Dataset


@dataclass
class TrainerSetup:
    config: TrainConfig
    data: Dataset
    params: dict[str, Any]  # the overrides given on the command line

    @property
    def divergence_factor(self) -> float:
        """The study's divergence factor; the default one where the file turns the rule off
        (a probe still needs to know when a run explodes)."""
        return self.config.divergence_factor or DivergenceSpec().factor


def searched_lr(spec: StudySpec) -> FloatParam | None:
    """The study's `lr` entry, when it is a positive float range (what the probes sweep)."""
    entry = spec.search_space.get("lr")
    return entry if isinstance(entry, FloatParam) and entry.low > 0 else None


def parse_overrides(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`NAME=VALUE` pairs (values read as YAML scalars) for the trainer's parameters, each
    checked against the trainer's limits (`hpo.spec.limits`)."""
    overrides = parse_assignments(pairs, "--param ", "optimizer=sgd")
    for pair in pairs:
        name = pair.partition("=")[0]
        if name not in TRAINER_PARAMS:
            raise HpoError(f"--param {pair!r}: the mlp trainer has no parameter {name!r}; "
                           f"{did_you_mean(name, list(TRAINER_PARAMS))}it has: "
                           f"{', '.join(TRAINER_PARAMS)}")
    for name, value in overrides.items():
        problem = value_problem(name, value, "give a value the trainer takes")
        if problem is not None:
            raise HpoError(f"--param {name}={value!r}: {problem}")
    return overrides


def trainer_setup(spec: StudySpec, overrides: dict[str, Any], command: str) -> TrainerSetup:
    """The data and one TrainConfig: the file's model and train sections, then `overrides`."""
    if not spec.objective.trainer:
        raise HpoError(
            f"{spec.source}: objective: `hpo {command}` needs the built-in trainer "
            f"(objective: {{trainer: mlp}}); this study's objective is the callable "
            f"{spec.objective.callable!r}, which hpo cannot probe"
        )
    from hpo.worker.objective import load_trainer_data, trainer_config

    _validate(spec, overrides)
    return TrainerSetup(trainer_config(spec, overrides), load_trainer_data(spec), overrides)


def _validate(spec: StudySpec, overrides: dict[str, Any]) -> None:
    """Each override checked as the study file's own value would be."""
    from pydantic import ValidationError

    from hpo.worker.objective import hidden_layers

    sections = {"model": spec.objective.model, "train": spec.objective.train}
    for name, value in overrides.items():
        try:
            if name == "hidden":
                if not all(w >= 1 for w in hidden_layers(value)):
                    raise ValueError
            elif name in ("hidden_units", "n_layers"):
                if not (isinstance(value, int) and value >= 1):
                    raise ValueError
            else:
                for section in sections.values():
                    if name in type(section).model_fields:
                        type(section).model_validate({**section.model_dump(), name: value})
        except ValidationError as e:
            message = e.errors()[0]["msg"].removeprefix("Value error, ")
            raise HpoError(f"--param {name}={value!r}: {message}") from e
        except ValueError as e:
            raise HpoError(f"--param {name}={value!r}: not a valid {name}; "
                           "give a positive whole number (hidden: 128, 128,64 or 128x3)"
                           ) from e


def describe(config: TrainConfig) -> str:
    """The settings a probe trained with, in one line."""
    hidden = "x".join(str(w) for w in config.hidden) or "none"
    return (f"optimizer {config.optimizer}, lr {config.lr:g}, batch_size {config.batch_size}, "
            f"initializer {config.initializer}, hidden {hidden}, batch_norm "
            f"{str(config.batch_norm).lower()}, activation {config.activation}")
