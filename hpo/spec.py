"""The study file: pydantic models of study.yaml and `load_spec`, where all validation happens."""

from __future__ import annotations

import difflib
import math
import re
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from hpo.errors import SpecError

Choice = bool | int | float | str | None

# Spec fields that size one run rather than define the study: they may differ between runs
# and workers of the same study, so they are left out of the stored spec that runs must match.
# (Heartbeat settings are not among them: a worker reaps others' trials by its own `grace`.)
RUN_ONLY_FIELDS = ("n_trials", "timeout", "storage", "max_failures_in_a_row")


def closest(word: str, candidates: list[str]) -> str | None:
    """The candidate `word` was most likely meant to be, if any is close."""
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None


class Problems(list):
    """The mistakes found in a file, collected so that all of them are reported at once."""

    @contextmanager
    def collecting(self) -> Iterator[None]:
        """Record a ValueError raised in the block as one problem, and go on."""
        try:
            yield
        except ValueError as e:
            self.append(str(e))

    def raise_any(self) -> None:
        if self:
            raise ValueError("\n".join(self))


def did_you_mean(word: str, candidates: list[str]) -> str:
    """`did you mean 'x'? ` for the candidate `word` was most likely meant to be, else ``."""
    hint = closest(word, candidates)
    return f"did you mean {hint!r}? " if hint else ""


def _unknown_key_message(key: str, allowed: list[str]) -> str:
    return f"unknown key {key!r}; {did_you_mean(key, allowed)}allowed keys: {', '.join(allowed)}"


class _Strict(BaseModel):
    """A spec section: unknown keys are errors (`_format_error` suggests the key meant)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitsSpec(_Strict):
    # Values an entry can never sensibly take beyond (dropout 0, a momentum below 1): edge
    # warnings stay quiet at a limit and `hpo refine` never widens past one.
    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> LimitsSpec:
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"low must be less than high, got low={self.low}, high={self.high}")
        return self


def _check_limits(entry: FloatParam | IntParam) -> None:
    limits = entry.limits
    if limits is None:
        return
    if limits.low is not None and limits.low > entry.low:
        raise ValueError(f"limits.low {limits.low} is above low {entry.low}; a limit bounds "
                         "the range from outside (limits.low <= low)")
    if limits.high is not None and limits.high < entry.high:
        raise ValueError(f"limits.high {limits.high} is below high {entry.high}; a limit "
                         "bounds the range from outside (limits.high >= high)")


class _Conditional(_Strict):
    # `when: {optimizer: [sgd, momentum]}` suggests this entry only for those values.
    when: dict[str, list[Choice]] | None = None

    @field_validator("when", mode="before")
    @classmethod
    def _scalars_become_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return value


class FloatParam(_Conditional):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(default=None, gt=0)
    limits: LimitsSpec | None = None

    @model_validator(mode="after")
    def _check_range(self) -> FloatParam:
        _check_low_high(self.low, self.high, self.log)
        _check_limits(self)
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be used together; remove one of them")
        return self

    @property
    def is_finite(self) -> bool:
        return self.step is not None


class IntParam(_Conditional):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(default=1, ge=1)
    limits: LimitsSpec | None = None

    @model_validator(mode="after")
    def _check_range(self) -> IntParam:
        _check_low_high(self.low, self.high, self.log)
        _check_limits(self)
        if self.log and self.step != 1:
            raise ValueError("log and step cannot be used together; remove one of them")
        return self

    is_finite: ClassVar[bool] = True


class CategoricalParam(_Conditional):
    type: Literal["categorical"]
    choices: list[Choice]

    @field_validator("choices")
    @classmethod
    def _check_choices(cls, choices: list[Choice]) -> list[Choice]:
        if not choices:
            raise ValueError("choices is empty; list at least one value")
        repeated = [c for i, c in enumerate(choices) if c in choices[:i]]
        if repeated:
            raise ValueError(f"choices lists {repeated[0]!r} more than once")
        return choices

    is_finite: ClassVar[bool] = True


def _check_low_high(low: float, high: float, log: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"low and high must be finite numbers, got low={low}, high={high}")
    if low >= high:
        raise ValueError(f"low must be less than high, got low={low}, high={high}")
    if log and low <= 0:
        raise ValueError(f"a log scale needs low > 0, got low={low}; raise low or drop log")


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]
PARAM_TYPES = ("float", "int", "categorical")

# hpo.samplers.SAMPLERS makes each; `_check_sampler` refuses what one cannot serve.
SamplerName = Literal["tpe", "random", "grid", "gp", "cmaes", "qmc", "auto"]
TPE_OPTIONS = ("n_startup_trials", "n_ei_candidates", "multivariate", "group", "constant_liar")


class SamplerSpec(_Strict):
    type: SamplerName = "tpe"
    seed: int | None = None
    # TPE's own options, passed through to optuna.samplers.TPESampler.
    n_startup_trials: int | None = Field(default=None, ge=0)
    n_ei_candidates: int | None = Field(default=None, ge=1)
    multivariate: bool | None = None
    group: bool | None = None
    constant_liar: bool | None = None

    @model_validator(mode="after")
    def _tpe_options_need_tpe(self) -> SamplerSpec:
        if self.type != "tpe":
            for option in TPE_OPTIONS:
                if getattr(self, option) is not None:
                    raise ValueError(f"{option} is a TPE option; it needs type: tpe")
        return self

    def options(self) -> dict[str, Any]:
        """The TPE options the file sets, as keyword arguments."""
        return {k: getattr(self, k) for k in TPE_OPTIONS if getattr(self, k) is not None}


EarlyName = Literal["median", "percentile", "successive_halving", "hyperband", "none"]

# Which option each early-stopping pruner takes; each maps to the Optuna pruner's argument.
EARLY_OPTIONS: dict[str, tuple[str, ...]] = {
    "median": ("n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials"),
    "percentile": (
        "percentile", "n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials",
    ),
    "successive_halving": ("min_resource", "reduction_factor", "min_early_stopping_rate"),
    "hyperband": ("min_resource", "max_resource", "reduction_factor"),
    "none": (),
}


class EarlySpec(_Strict):
    type: EarlyName
    n_startup_trials: int | None = Field(default=None, ge=0)
    n_warmup_steps: int | None = Field(default=None, ge=0)
    interval_steps: int | None = Field(default=None, ge=1)
    n_min_trials: int | None = Field(default=None, ge=1)
    percentile: float | None = Field(default=None, ge=0, le=100)
    min_resource: int | Literal["auto"] | None = None
    max_resource: int | Literal["auto"] | None = None
    reduction_factor: int | None = Field(default=None, ge=2)
    min_early_stopping_rate: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _options_fit_type(self) -> EarlySpec:
        allowed = EARLY_OPTIONS[self.type]
        for option in self.options():
            if option not in allowed:
                fits = [name for name, opts in EARLY_OPTIONS.items() if option in opts]
                raise ValueError(f"{option} does not apply to {self.type}; it is for {fits[0]}")
        if self.type == "percentile" and self.percentile is None:
            raise ValueError("percentile needs a percentile value, e.g. percentile: 25.0")
        return self

    def options(self) -> dict[str, Any]:
        """The options the file sets, as keyword arguments of the Optuna pruner."""
        names = [n for n in type(self).model_fields if n != "type"]
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


class DivergenceSpec(_Strict):
    # Stop a trial whose cost exceeds factor x its original cost ("exceeds": exactly 3x goes on).
    factor: float = Field(default=3.0, gt=1.0)


class PrunerSpec(_Strict):
    # `divergence: false` turns the rule off; `true` keeps the default factor.
    divergence: DivergenceSpec | Literal[False] = DivergenceSpec()
    early: EarlySpec | None = None

    @field_validator("divergence", mode="before")
    @classmethod
    def _true_is_default(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is not False and not isinstance(value, dict):
            raise ValueError(f"give a mapping such as {{factor: 3.0}}, or false; got {value!r}")
        return value


# The built-in trainer's names. training/ holds the registries behind them; a test keeps the
# two in step, and the spec stays importable without torch.
DATASETS = ("digits", "iris", "wine", "breast_cancer", "synthetic")
NORMALIZATIONS = ("standard", "center", "minmax", "none")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid")
INITIALIZERS = (
    "zeros", "normal", "small_normal", "uniform", "xavier_uniform", "xavier_normal",
    "lecun_uniform", "lecun_normal", "he_uniform", "he_normal",
)
OPTIMIZERS = (
    "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "nadam",
    "radam",
)
LR_SCHEDULES = ("exponential", "step", "cosine")
TRAINER_METRICS = {"val_accuracy": "maximize", "val_loss": "minimize", "train_loss": "minimize"}


class DataSpec(_Strict):
    dataset: Literal["digits", "iris", "wine", "breast_cancer", "synthetic"] | None = None
    path: str | None = None  # a CSV with a header, or an NPZ with arrays X and y
    label: str | None = None  # the CSV's label column
    normalize: Literal["standard", "center", "minmax", "none"] = "standard"
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 0
    # The synthetic dataset's shape.
    n_samples: int = Field(default=2000, ge=10)
    n_features: int = Field(default=20, ge=2)
    n_classes: int = Field(default=2, ge=2)

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.dataset is None) == (self.path is None):
            raise ValueError("give exactly one of dataset (a built-in name) or path (a file)")
        if self.path and self.path.endswith(".csv") and not self.label:
            raise ValueError("a CSV file needs label: the name of its label column")
        if self.path and not self.path.endswith((".csv", ".npz")):
            raise ValueError(f"path must be a .csv or .npz file, got {self.path!r}")
        return self


class ModelSpec(_Strict):
    hidden: list[int] = Field(default=[128, 128])
    activation: Literal["relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid"] = "relu"
    batch_norm: bool = False
    dropout: float = Field(default=0.0, ge=0, lt=1)
    initializer: Literal[
        "zeros", "normal", "small_normal", "uniform", "xavier_uniform", "xavier_normal",
        "lecun_uniform", "lecun_normal", "he_uniform", "he_normal",
    ] = "he_normal"

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, hidden: list[int]) -> list[int]:
        if any(width < 1 for width in hidden):
            raise ValueError(f"every hidden layer needs at least 1 unit, got {hidden}")
        return hidden


class TrainSpec(_Strict):
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    optimizer: Literal[
        "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw",
        "nadam", "radam",
    ] = "adam"
    momentum: float | None = Field(default=None, ge=0, lt=1)  # None: 0.9 for momentum/nesterov
    weight_decay: float = Field(default=0.0, ge=0)
    lr_decay: float | None = Field(default=None, gt=0, le=1)  # multiply lr by this per epoch
    lr_schedule: Literal["exponential", "step", "cosine"] = "exponential"
    lr_step_epochs: int = Field(default=10, ge=1)  # the step schedule's period
    grad_clip: float | None = Field(default=None, gt=0)
    early_stop_patience: int | None = Field(default=None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(default=None, ge=1)
    seed: int = 0
    # Trials a worker trains at once, those of one model shape and batch size as one stacked
    # model (`hpo.training.pack`); `auto`: where measured to pay (`hpo.packing`).
    pack: int | Literal["auto"] = Field(default="auto")

    @field_validator("pack", mode="before")
    @classmethod
    def _pack_is_auto_or_a_count(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool)
                               and value >= 1):
            return value
        raise ValueError(f"pack must be auto or a number of trials at least 1 (1 trains one "
                         f"at a time), but got {value!r}")


class HeartbeatSpec(_Strict):
    # A worker's running trial sends a heartbeat every `interval` seconds; one silent for
    # `grace` seconds is failed and re-run by a live worker, at most `max_retries` times.
    interval: int = Field(default=10, ge=1)
    grace: int = Field(default=30, ge=1)
    max_retries: int = Field(default=2, ge=0)

    @model_validator(mode="after")
    def _grace_covers_beats(self) -> HeartbeatSpec:
        if self.grace <= self.interval:
            raise ValueError(f"grace must be longer than interval, got grace={self.grace}, "
                             f"interval={self.interval}; e.g. grace = 3 x interval")
        return self


class ObjectiveSpec(_Strict):
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


class StageSpec(_Strict):
    # One stage of a staged study: its own Optuna study, `<study name>-<stage name>`.
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    n_trials: int = Field(ge=1)
    # The search_space entries searched in this stage (default: all of them). An entry
    # searched in the stage before is refined from that stage's top trials; one searched
    # before but not now is fixed at the best value so far.
    params: list[str] | None = None
    fixed: dict[str, Choice] = {}  # entries held at a value in this stage
    train: dict[str, Any] = {}  # the built-in trainer's train settings for this stage


class StudySpec(_Strict):
    name: str = Field(min_length=1, pattern=r"^\S(.*\S)?$")
    direction: Literal["minimize", "maximize"] = "minimize"
    metric: str = "value"
    n_trials: int | None = Field(default=None, ge=1)
    timeout: float | None = Field(default=None, gt=0)
    storage: str | None = None
    # A worker whose trials keep raising stops: most likely a bug in the objective, not bad
    # luck. Failed trials do not count against n_trials, so there is always some limit.
    max_failures_in_a_row: int = Field(default=5, ge=1)
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    heartbeat: HeartbeatSpec | Literal[False] = HeartbeatSpec()
    objective: ObjectiveSpec
    search_space: dict[str, Param] = {}
    # Parameters of trials to run first, before the sampler proposes any (`hpo refine`
    # starts the next stage from the last one's best this way).
    enqueue: list[dict[str, Choice]] = []
    # A study in the same storage whose finished trials inside this search space start this
    # one, as evidence for the sampler that does not count against n_trials (`hpo.carry`;
    # `hpo refine` writes it).
    carry_from: str | None = Field(default=None, min_length=1)
    stages: list[StageSpec] | None = None

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path:
        """The study file this spec was read from (the folder relative paths start from)."""
        return self._source or Path("study.yaml").absolute()

    @model_validator(mode="after")
    def _check_whole_study(self) -> StudySpec:
        # Every problem at once, one line each: a user fixes them all in one pass.
        problems = Problems()
        if self.stages is not None:
            _check_stages(self, problems)
        elif self.n_trials is None and self.timeout is None:
            problems.append("n_trials: set n_trials (or a timeout) so the study can end")
        _check_conditions(self.search_space, problems)
        _check_enqueue(self.enqueue, self.search_space, problems)
        if self.sampler.type == "grid":
            _check_grid(self.search_space, problems)
        _check_sampler(self, problems)
        if self.carry_from is not None:
            _check_carry(self, problems)
        if self.objective.trainer:
            _check_trainer(self, problems)
        problems.raise_any()
        return self

    def identity(self) -> dict[str, Any]:
        """What every run and worker of this study must agree on: the fields set to other
        than their defaults, less the run-only ones.

        Defaults are left out so that a field a later hpo adds, at its default, changes no
        study's identity (`hpo.study` versions what is stored, for defaults that change).
        """
        identity = self.model_dump(mode="json", exclude=set(RUN_ONLY_FIELDS),
                                   exclude_none=True, exclude_defaults=True)
        # How many trials a worker trains at once changes no trial's result.
        identity.get("objective", {}).get("train", {}).pop("pack", None)
        # Limits change no trial, only what hpo advises: adding one must not refuse a resume.
        for entry in identity.get("search_space", {}).values():
            entry.pop("limits", None)
        return identity

    def normalized(self) -> dict[str, Any]:
        """The whole spec with every default filled in, as plain data."""
        return self.model_dump(mode="json", exclude_none=True)


def _check_conditions(space: dict[str, Any], problems: Problems) -> None:
    names, found_before = list(space), len(problems)
    for name, entry in space.items():
        for parent, values in (entry.when or {}).items():
            with problems.collecting():
                _check_condition(space, name, parent, values)
    if len(problems) > found_before:
        return  # a cycle is only looked for among conditions that name real parents
    for name in names:
        with problems.collecting():
            _check_no_cycle(space, name, [])


def _check_condition(space: dict[str, Any], name: str, parent: str, values: list) -> None:
    where = f"search_space.{name}.when.{parent}"
    if parent not in space or parent == name:
        hint = closest(parent, [n for n in space if n != name])
        suffix = f"; did you mean {hint!r}?" if hint else ""
        raise ValueError(f"{where}: names {parent!r}, which is not in search_space{suffix}")
    parent_entry = space[parent]
    if not isinstance(parent_entry, CategoricalParam):
        raise ValueError(f"{where}: {parent!r} must be a categorical entry to condition on")
    for value in values:
        if value not in parent_entry.choices:
            raise ValueError(f"{where}: {value!r} is not one of {parent!r}'s choices "
                             f"{parent_entry.choices}")


def fits(entry: Any, value: Any) -> bool:
    """Whether a search-space entry can take `value`."""
    if isinstance(entry, CategoricalParam):
        return value in entry.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(entry, IntParam) and value != int(value):
        return False
    if not entry.low <= value <= entry.high:
        return False
    if entry.step is None:
        return True
    # Optuna ignores an enqueued value between steps (and samples one), so it does not fit.
    steps = (value - entry.low) / entry.step
    return abs(steps - round(steps)) < 1e-8


def _check_enqueue(enqueue: list[dict[str, Any]], space: dict[str, Any],
                   problems: Problems) -> None:
    for i, params in enumerate(enqueue):
        for name, value in params.items():
            entry = space.get(name)
            if entry is not None and not fits(entry, value):
                problems.append(f"enqueue.{i}.{name}: {value!r} is outside the entry's range "
                                f"({allowed_values(entry)}); enqueue a value it can take")


def allowed_values(entry: Any) -> str:
    """The values a search-space entry can take, as a person reads them."""
    if isinstance(entry, CategoricalParam):
        return ", ".join(map(repr, entry.choices))
    step = f" in steps of {entry.step}" if entry.step not in (None, 1) else ""
    return f"{entry.low} .. {entry.high}{step}"


# The fewest trials a stage that the next one is refined from may have (hpo.wisdom.refine).
MIN_TRIALS_TO_REFINE = 5


def _check_stages(spec: StudySpec, problems: Problems) -> None:
    stages = spec.stages
    if not stages:
        problems.append("stages: list at least one stage, e.g. - {name: lr, n_trials: 10, "
                        "params: [lr]}")
        return
    if spec.n_trials is not None:
        problems.append("n_trials: a staged study sets n_trials in each stage; remove the "
                        "top-level n_trials")
    if spec.sampler.type == "grid":
        problems.append("stages: the grid sampler cannot be staged (refined ranges are "
                        "continuous); use sampler type tpe or random")
    valued: set[str] = set()  # entries with a value from this stage or an earlier one
    for i, stage in enumerate(stages):
        params = list(spec.search_space) if stage.params is None else stage.params
        valued |= set(params) | set(stage.fixed)
        with problems.collecting():
            _check_stage(spec, i, params, valued)


def _check_stage(spec: StudySpec, i: int, params: list[str], valued: set[str]) -> None:
    stage, where = spec.stages[i], f"stages.{i}"
    if stage.name in [s.name for s in spec.stages[:i]]:
        raise ValueError(f"{where}.name: {stage.name!r} names two stages; give each its own")
    for key, listed in (("params", params), ("fixed", list(stage.fixed))):
        for name in listed:
            if name not in spec.search_space:
                hint = closest(name, list(spec.search_space))
                suffix = f"; did you mean {hint!r}?" if hint else ""
                raise ValueError(f"{where}.{key}: {name!r} is not in search_space{suffix}")
    both = set(params) & set(stage.fixed)
    if both:
        raise ValueError(f"{where}: {sorted(both)[0]!r} is both searched (params) and "
                         "fixed; keep one")
    if i < len(spec.stages) - 1 and stage.n_trials < MIN_TRIALS_TO_REFINE:
        raise ValueError(f"{where}.n_trials: the next stage is refined from this one's top "
                         f"trials, which needs at least {MIN_TRIALS_TO_REFINE}; got "
                         f"{stage.n_trials}")
    for name in params:
        for parent in spec.search_space[name].when or {}:
            if parent not in valued:
                raise ValueError(f"{where}.params: {name!r} depends on {parent!r} (when:), "
                                 f"which has no value in this stage; search or fix "
                                 f"{parent!r} too")
    if spec.objective.callable:
        missing = [n for n in spec.search_space if n not in valued]
        if missing:
            raise ValueError(f"{where}: {missing[0]!r} has no value in this stage: a "
                             "callable objective reads every entry, so add it to params "
                             "or to fixed")
        if stage.train:
            raise ValueError(f"{where}.train: train settings are the built-in trainer's; "
                             "this objective is a callable (use fixed: for its entries)")
    elif stage.train:
        try:
            TrainSpec.model_validate({**spec.objective.train.model_dump(), **stage.train})
        except ValidationError as e:
            raise ValueError("\n".join(
                f"{where}.train{'.' + field if field else ''}: {message}"
                for field, message in (describe_error(error, TrainSpec) for error in e.errors())
            )) from None


def _check_carry(spec: StudySpec, problems: Problems) -> None:
    if spec.carry_from == spec.name:
        problems.append(f"carry_from: {spec.carry_from!r} is this study itself; name the "
                        "study to carry trials from (the one this file was refined from)")
    if spec.stages is not None:
        problems.append("carry_from: a staged study carries trials from stage to stage by "
                        "itself; remove carry_from")
    if spec.sampler.type == "grid":
        problems.append("carry_from: the grid sampler runs its own points and cannot take "
                        "carried trials; remove carry_from or use sampler type tpe")


def _check_no_cycle(space: dict[str, Any], name: str, path: list[str]) -> None:
    if name in path:
        cycle = " -> ".join([*path[path.index(name):], name])
        raise ValueError(f"search_space.{name}.when: conditions form a cycle: {cycle}")
    for parent in space[name].when or {}:
        _check_no_cycle(space, parent, [*path, name])


def _check_trainer(spec: StudySpec, problems: Problems) -> None:
    expected = TRAINER_METRICS.get(spec.metric)
    if expected is None:
        problems.append(f"metric: the mlp trainer reports {', '.join(TRAINER_METRICS)}; got "
                        f"{spec.metric!r}")
    elif spec.direction != expected:
        problems.append(f"direction: {spec.metric} needs direction: {expected}")
    for name, entry in spec.search_space.items():
        with problems.collecting():
            _check_trainer_entry(name, entry)
    if "hidden" in spec.search_space and (
        {"hidden_units", "n_layers"} & set(spec.search_space)
    ):
        problems.append("search_space: search hidden, or hidden_units and n_layers, not both")


def _check_trainer_entry(name: str, entry: Any) -> None:
    if name not in TRAINER_PARAMS:
        raise ValueError(f"search_space.{name}: the mlp trainer does not use {name!r}; "
                         f"{did_you_mean(name, list(TRAINER_PARAMS))}it uses: "
                         f"{', '.join(TRAINER_PARAMS)}")
    allowed = {"initializer": INITIALIZERS, "optimizer": OPTIMIZERS,
               "activation": ACTIVATIONS}.get(name)
    if allowed and isinstance(entry, CategoricalParam):
        for choice in entry.choices:
            if choice not in allowed:
                raise ValueError(f"search_space.{name}.choices: unknown {name} {choice!r}; "
                                 f"allowed: {', '.join(allowed)}")
    if name == "hidden" and isinstance(entry, CategoricalParam):
        for choice in entry.choices:
            if not re.fullmatch(r"[1-9]\d*(,[1-9]\d*)*|[1-9]\d*x[1-9]\d*", str(choice)):
                raise ValueError(
                    f"search_space.hidden.choices: {choice!r} is not a layer shape; write 128 "
                    '(one layer), "128,64" (one width a layer) or "128x3" (3 layers of 128)'
                )


def _check_grid(space: dict[str, Any], problems: Problems) -> None:
    if not space:
        problems.append("search_space: the grid sampler needs at least one entry")
    for name, entry in space.items():
        if not entry.is_finite:
            problems.append(
                f"search_space.{name}: the grid sampler needs finite values, but this float "
                f"range has none; add a step (e.g. step: {(entry.high - entry.low) / 4:g}) "
                "or use sampler type random or tpe"
            )
        if entry.when:
            problems.append(
                f"search_space.{name}.when: the grid sampler cannot run conditional entries; "
                "drop when: or use sampler type random or tpe"
            )


def searched_categoricals(space: dict[str, Any]) -> list[str]:
    """Categorical entries with more than one choice (one choice is a fixed value, as
    `hpo refine` and stages write them, which no sampler draws)."""
    return [name for name, entry in space.items()
            if isinstance(entry, CategoricalParam) and len(entry.choices) > 1]


def conditional_entries(space: dict[str, Any]) -> list[str]:
    """Entries a trial may or may not suggest: a `when:` on an entry that takes more than
    one value, directly or through its own `when:` (on a fixed value it is a fixed yes or no)."""

    def varies(name: str, seen: frozenset[str]) -> bool:
        entry = space.get(name)
        if entry is None or name in seen:  # a missing parent or a cycle: reported elsewhere
            return False
        return ((isinstance(entry, CategoricalParam) and len(entry.choices) > 1)
                or conditional(name, seen | {name}))

    def conditional(name: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(varies(parent, seen) for parent in space[name].when or {})

    return [name for name in space if conditional(name)]


def auto_needs_tpe(space: dict[str, Any]) -> str | None:
    """Why sampler type auto runs TPE throughout, or None when it starts with GP: GP models
    numbers, TPE categorical and conditional entries (the rule of Optuna's AutoSampler)."""
    # A conditional entry hangs off a categorical one with choices (conditional_entries), so
    # that one is named.
    categorical = searched_categoricals(space)
    if not categorical:
        return None
    conditional = conditional_entries(space)
    also = f", {conditional[0]} conditional" if conditional else ""
    return f"search_space.{categorical[0]} is categorical{also}"


# What a sampler type needs beyond hpo's base dependencies, and how to get it.
# (cmaes and scipy, which cmaes and qmc need, are hpo's own dependencies.)
SAMPLER_PACKAGES = {"gp": ("torch",)}
INSTALL_HINTS = {
    "torch": "install torch as the README says (pip install 'hpo[train]' after it)",
}


def _check_sampler(spec: StudySpec, problems: Problems) -> None:
    """What the chosen sampler cannot serve, one line each with the fix."""
    kind, space = spec.sampler.type, spec.search_space
    if kind in ("gp", "cmaes"):
        # Optuna's GP and CMA-ES model the entries every trial has; they draw the others at
        # random, outside the model. (qmc takes a conditional entry's coordinate of the
        # trial's Sobol point, see hpo.samplers._Sobol, so it serves them.)
        for name in conditional_entries(space):
            problems.append(f"search_space.{name}.when: the {kind} sampler cannot model "
                            "conditional entries (Optuna draws them at random); use sampler "
                            "type tpe or auto, or drop when:")
    if kind == "cmaes":
        for name in searched_categoricals(space):
            problems.append(f"search_space.{name}: the cmaes sampler cannot model categorical "
                            f"entries (Optuna draws choices {space[name].choices} at random); "
                            "use sampler type gp, tpe or auto")
    _check_sampler_packages(kind, space, problems)


def _check_sampler_packages(kind: str, space: dict[str, Any], problems: Problems) -> None:
    import importlib.util

    uses_gp = kind == "auto" and auto_needs_tpe(space) is None
    for package in SAMPLER_PACKAGES.get("gp" if uses_gp else kind, ()):
        try:
            found = importlib.util.find_spec(package) is not None
        except ValueError:  # a module without a spec stands in for it
            found = False
        if not found:
            needs = "runs GP on this all-numeric space, which needs" if uses_gp else "needs"
            problems.append(f"sampler.type: {kind} {needs} {package}, which is not installed; "
                            f"{INSTALL_HINTS[package]}, or use sampler type tpe")


_UNION_MEMBER = re.compile(r"^([A-Z]\w*Spec|literal\[.*\]|int|float|bool|str|function-.*)$")


def _format_location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    # Discriminated unions add the entry's type tag to the location; the user never wrote it.
    if len(parts) >= 3 and parts[0] == "search_space" and parts[2] in PARAM_TYPES:
        del parts[2]
    # Other unions add the member they tried (`DivergenceSpec`, `literal[False]`, `int`).
    return ".".join(p for p in parts if not _UNION_MEMBER.match(p))


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The spec sections a field's annotation can hold (inside lists, dicts and unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _type_tags(model: type[BaseModel]) -> tuple[Any, ...]:
    """The `type:` values that pick this model in a discriminated union (none if untagged)."""
    field = model.model_fields.get("type")
    return typing.get_args(field.annotation) if field is not None else ()


def _section_at(loc: tuple[Any, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The section (model) that holds the key at the end of an error's location."""
    model: type[BaseModel] | None = root
    pending: list[type[BaseModel]] = []  # a union's members, until the location picks one
    for part in loc[:-1]:
        if pending:
            chosen = [m for m in pending if part in (m.__name__, *_type_tags(m))]
            if chosen:
                model, pending = chosen[0], []
            continue  # a dict key or list index on the way to the member
        if model is not None and part in model.model_fields:
            found = _models_in(model.model_fields[part].annotation)
            model, pending = (found[0], []) if len(found) == 1 else (None, found)
    return model


def describe_error(error: dict[str, Any], root: type[BaseModel] = BaseModel
                   ) -> tuple[str, str]:
    """A pydantic error as (dotted field, message for a person)."""
    where = _format_location(error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        section = _section_at(error["loc"], root)
        allowed = list(section.model_fields) if section is not None else []
        message = _unknown_key_message(str(error["loc"][-1]), allowed)
    elif error["type"] == "union_tag_invalid":
        tag = error["ctx"]["tag"]
        hint = closest(tag, list(PARAM_TYPES))
        message = f"unknown type {tag!r}; " + (f"did you mean {hint!r}? " if hint else "")
        message += f"allowed types: {', '.join(PARAM_TYPES)}"
    elif error["type"] == "union_tag_not_found":
        message = f"missing type; give one of: {', '.join(PARAM_TYPES)}"
    elif error["type"] not in ("value_error", "missing") and "input" in error:
        if not isinstance(error["input"], dict):
            message += f" (got {error['input']!r})"
    return where, message


def _format_errors(path: Path, errors: list[dict[str, Any]]) -> list[str]:
    """One line per problem, each naming the file and the field."""
    lines = []
    model_errors = [_format_location(e["loc"]) for e in errors if e["type"] != "literal_error"]
    # `hihg: 1` is one mistake, not also a missing `high`: the unknown key's line says it.
    misspelt = {(e["loc"][:-1], closest(str(e["loc"][-1]), list(section.model_fields)))
                for e in errors if e["type"] == "extra_forbidden"
                and (section := _section_at(e["loc"], StudySpec)) is not None}
    for error in errors:
        if error["type"] == "missing" and (error["loc"][:-1], error["loc"][-1]) in misspelt:
            continue
        if error["type"] == "literal_error" and any(
            where.startswith(_format_location(error["loc"])) for where in model_errors
        ):
            continue  # `divergence: {fator: 2}` is a bad mapping, not a bad `false`
        where, message = describe_error(error, StudySpec)
        # A whole-study check reports all its problems in one error, a line each.
        for line in message.splitlines():
            lines.append(f"{path}: {where}: {line}" if where else f"{path}: {line}")
    # A wrong value in a union is reported once per member tried; say it once.
    return list(dict.fromkeys(lines))


def parse_spec(data: Any, path: Path) -> StudySpec:
    """Validate already-parsed YAML data as a study spec read from `path`."""
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the file must be a YAML mapping of study fields, got {data!r}")
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as e:
        raise SpecError("\n".join(_format_errors(path, e.errors()))) from None
    spec._source = path.absolute()
    return spec


def parse_assignments(pairs: tuple[str, ...], flag: str, example: str) -> dict[str, Any]:
    """`NAME=VALUE` command-line words, each value read as a YAML scalar (0.01, adam, true),
    as the study file would read it."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        if not equals or not name:
            raise SpecError(f"{flag}{pair!r}: write NAME=VALUE, e.g. {flag}{example}")
        values[name] = yaml.safe_load(text) if text else ""
    return values


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file; any problem is a one-line SpecError."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such study file") from None
    except OSError as e:
        raise SpecError(f"{path}: cannot read the study file ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        context = ""
        if e.context and e.context_mark:
            context = f" ({e.context} at line {e.context_mark.line + 1})"
        raise SpecError(f"{path}: YAML syntax error at {where}: {e.problem}{context}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: YAML syntax error: {e}") from None
    return parse_spec(data, path)
