"""The whole study file (StudySpec), its heartbeat section, and checks across sections."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, model_validator

from hpo.spec.base import Choice, Problems, Strict, closest
from hpo.spec.describe import describe_error
from hpo.spec.limits import value_problem
from hpo.spec.search import PrunerSpec, SamplerSpec, check_sampler
from hpo.spec.space import Param, allowed_values, check_conditions, check_grid, fits
from hpo.spec.stages import MIN_TRIALS_TO_REFINE, StageSpec
from hpo.spec.trainer import ObjectiveSpec, TrainSpec, check_trainer

# Spec fields that size one run rather than define the study: they may differ between runs
# and workers of the same study, so they are left out of the stored spec that runs must match.
# (Heartbeat settings are not among them: a worker reaps others' trials by its own `grace`.)
RUN_ONLY_FIELDS = ("n_trials", "timeout", "storage", "max_failures_in_a_row")


class HeartbeatSpec(Strict):
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


class StudySpec(Strict):
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
    # one, as evidence for the sampler that does not count against n_trials (`hpo.store.carry`;
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
        check_conditions(self.search_space, problems)
        _check_enqueue(self.enqueue, self.search_space, bool(self.objective.trainer), problems)
        if self.sampler.type == "grid":
            check_grid(self.search_space, problems)
        check_sampler(self.sampler.type, self.search_space, problems)
        if self.carry_from is not None:
            _check_carry(self, problems)
        if self.objective.trainer:
            check_trainer(self.metric, self.direction, self.search_space, problems)
        problems.raise_any()
        return self

    def identity(self) -> dict[str, Any]:
        """What every run and worker of this study must agree on: the fields set to other
        than their defaults, less the run-only ones.

        Defaults are left out so that a field a later hpo adds, at its default, changes no
        study's identity (`hpo.store.study` versions what is stored, for defaults that change).
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


def _check_enqueue(enqueue: list[dict[str, Any]], space: dict[str, Any], trainer: bool,
                   problems: Problems) -> None:
    for i, params in enumerate(enqueue):
        for name, value in params.items():
            entry = space.get(name)
            fix = "enqueue a value the trainer takes"
            problem = value_problem(name, value, fix) if trainer else None
            if problem is not None:
                problems.append(f"enqueue.{i}.{name}: {problem}")
            elif entry is not None and not fits(entry, value):
                problems.append(f"enqueue.{i}.{name}: {value!r} is outside the entry's range "
                                f"({allowed_values(entry)}); enqueue a value it can take")


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
    for name, value in stage.fixed.items():
        fix = "fix it at a value the trainer takes"
        problem = value_problem(name, value, fix) if spec.objective.trainer else None
        if problem is not None:
            raise ValueError(f"{where}.fixed.{name}: {problem}")
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
            )) from e
