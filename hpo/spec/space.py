"""The search space: its entries (float, int, categorical) and the checks on it as a whole."""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from hpo.spec.base import Choice, Problems, Strict, closest


class LimitsSpec(Strict):
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


class _Conditional(Strict):
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


def check_conditions(space: dict[str, Any], problems: Problems) -> None:
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


def _check_no_cycle(space: dict[str, Any], name: str, path: list[str]) -> None:
    if name in path:
        cycle = " -> ".join([*path[path.index(name):], name])
        raise ValueError(f"search_space.{name}.when: conditions form a cycle: {cycle}")
    for parent in space[name].when or {}:
        _check_no_cycle(space, parent, [*path, name])


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


def allowed_values(entry: Any) -> str:
    """The values a search-space entry can take, as a person reads them."""
    if isinstance(entry, CategoricalParam):
        return ", ".join(map(repr, entry.choices))
    step = f" in steps of {entry.step}" if entry.step not in (None, 1) else ""
    return f"{entry.low} .. {entry.high}{step}"


def check_grid(space: dict[str, Any], problems: Problems) -> None:
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
