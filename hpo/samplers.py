"""Sampler names of the study file -> seeded Optuna samplers (a typed registry)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hpo.space import grid

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

    from hpo.spec import StudySpec


def _tpe(spec: StudySpec) -> BaseSampler:
    from optuna.samplers import TPESampler

    return TPESampler(seed=spec.sampler.seed, **spec.sampler.options())


def _random(spec: StudySpec) -> BaseSampler:
    from optuna.samplers import RandomSampler

    return RandomSampler(seed=spec.sampler.seed)


def _grid(spec: StudySpec) -> BaseSampler:
    from optuna.samplers import GridSampler

    return GridSampler(grid(spec.search_space), seed=spec.sampler.seed)


SAMPLERS: dict[str, Callable[[StudySpec], BaseSampler]] = {
    "tpe": _tpe,
    "random": _random,
    "grid": _grid,
}


def make_sampler(spec: StudySpec) -> BaseSampler:
    """The sampler the spec names, seeded with its seed."""
    return SAMPLERS[spec.sampler.type](spec)
