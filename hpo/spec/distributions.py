"""Search-space entries of the spec -> trial.suggest_* calls, and grid expansion."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpo.spec import CategoricalParam, FloatParam, IntParam

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

    from hpo.spec import Param


def suggestion_order(space: dict[str, Param]) -> list[str]:
    """Entry names with every `when:` parent before the entries that depend on it."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        for parent in space[name].when or {}:
            visit(parent)
        ordered.append(name)

    for name in space:
        visit(name)
    return ordered


def suggest_all(trial: optuna.Trial, space: dict[str, Param]) -> dict[str, Any]:
    """Suggest every entry whose conditions hold; returns the values suggested."""
    values: dict[str, Any] = {}
    for name in suggestion_order(space):
        entry = space[name]
        conditions = entry.when or {}
        if all(parent in values and values[parent] in allowed
               for parent, allowed in conditions.items()):
            values[name] = suggest(trial, name, entry)
    return values


def suggest(trial: optuna.Trial, name: str, entry: Param) -> Any:
    """One `trial.suggest_*` call for one search-space entry."""
    if isinstance(entry, FloatParam):
        return trial.suggest_float(name, entry.low, entry.high, log=entry.log, step=entry.step)
    if isinstance(entry, IntParam):
        return trial.suggest_int(name, entry.low, entry.high, log=entry.log, step=entry.step)
    return trial.suggest_categorical(name, entry.choices)


def distribution(entry: Param) -> BaseDistribution:
    """The Optuna distribution `suggest` draws an entry from."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if isinstance(entry, FloatParam):
        return FloatDistribution(entry.low, entry.high, log=entry.log, step=entry.step)
    if isinstance(entry, IntParam):
        return IntDistribution(entry.low, entry.high, log=entry.log, step=entry.step)
    return CategoricalDistribution(entry.choices)


def grid_values(entry: Param) -> list[Any]:
    """Every value a finite entry can take, in order (the spec rejects infinite ones)."""
    if isinstance(entry, CategoricalParam):
        return list(entry.choices)
    if isinstance(entry, IntParam):
        return list(range(entry.low, entry.high + 1, entry.step))
    assert isinstance(entry, FloatParam) and entry.step is not None
    count = int((entry.high - entry.low) / entry.step + 1e-9) + 1
    return [round(entry.low + i * entry.step, 12) for i in range(count)]


def grid(space: dict[str, Param]) -> dict[str, list[Any]]:
    """The grid sampler's search space: each entry's values."""
    return {name: grid_values(entry) for name, entry in space.items()}


def grid_size(space: dict[str, Param]) -> int:
    """How many points the grid has."""
    size = 1
    for values in grid(space).values():
        size *= len(values)
    return size
