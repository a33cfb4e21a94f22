"""Sampler names of the study file -> seeded Optuna samplers (a typed registry)."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from hpo.space import grid

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

    from hpo.spec import StudySpec


def worker_seed(seed: int | None, worker_id: str) -> int | None:
    """The study's seed made distinct per worker, so workers do not propose the same trials.

    A lone worker (no id) keeps the study's seed, so a one-worker run repeats exactly.
    """
    if seed is None or not worker_id:
        return seed
    offset = int(worker_id) if worker_id.isdigit() else zlib.crc32(worker_id.encode())
    return (seed + offset) % 2**32


def _tpe(spec: StudySpec, worker_id: str) -> BaseSampler:
    from optuna.samplers import TPESampler

    # Optuna 5's TPE defaults to constant_liar=True: running trials count as bad guesses,
    # which keeps concurrent workers from piling onto one region.
    return TPESampler(seed=worker_seed(spec.sampler.seed, worker_id), **spec.sampler.options())


def _random(spec: StudySpec, worker_id: str) -> BaseSampler:
    from optuna.samplers import RandomSampler

    return RandomSampler(seed=worker_seed(spec.sampler.seed, worker_id))


def _grid(spec: StudySpec, worker_id: str) -> BaseSampler:
    from optuna.samplers import GridSampler

    # The grid order stays shared; the study lock keeps workers from taking one point twice.
    return GridSampler(grid(spec.search_space), seed=spec.sampler.seed)


SAMPLERS: dict[str, Callable[[StudySpec, str], BaseSampler]] = {
    "tpe": _tpe,
    "random": _random,
    "grid": _grid,
}


def make_sampler(spec: StudySpec, worker_id: str = "") -> BaseSampler:
    """The sampler the spec names, seeded with its seed made distinct for this worker."""
    return SAMPLERS[spec.sampler.type](spec, worker_id)
