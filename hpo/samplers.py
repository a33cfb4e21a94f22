"""Sampler names of the study file -> Optuna samplers whose draws are seeded per trial.

Workers share nothing but the database, so a sampler seeded once per process makes every
worker started with the same study file propose the same trials. Instead, a trial's random
draws are seeded by (study seed, trial number): trial numbers are unique within a study, so
no two workers draw alike, and a seeded study proposes the same random trials whatever the
number of workers and whichever worker runs which trial. (TPE past its startup trials also
depends on which trials have finished, which no seed can fix across workers.)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.samplers import BaseSampler, GridSampler

from hpo.space import grid

if TYPE_CHECKING:
    from optuna import Study
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial, TrialState

    from hpo.spec import StudySpec


def trial_seed(study_seed: int, trial_number: int) -> int:
    """The seed of one trial's draws: well mixed, so neighbouring trials are unrelated."""
    return int(np.random.SeedSequence([study_seed, trial_number]).generate_state(1)[0])


class TrialSeededSampler(BaseSampler):
    """Delegates each trial to a sampler made for it, seeded by (study seed, trial number).

    `make(seed)` builds the inner sampler. A worker runs one trial at a time, so only the
    latest trial's sampler is kept; every call names its trial, so each reaches the right one.
    """

    def __init__(self, make: Callable[[int], BaseSampler], seed: int) -> None:
        self._make = make
        self._seed = seed
        self._number: int | None = None
        self._inner: BaseSampler | None = None

    def _for(self, trial: FrozenTrial) -> BaseSampler:
        if self._inner is None or self._number != trial.number:
            self._number, self._inner = trial.number, self._make(trial_seed(self._seed,
                                                                            trial.number))
        return self._inner

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._for(trial).after_trial(study, trial, state, values)


def _tpe(spec: StudySpec) -> Callable[[int | None], BaseSampler]:
    from optuna.exceptions import ExperimentalWarning
    from optuna.samplers import TPESampler

    def make(seed: int | None) -> BaseSampler:
        # Optuna 5's TPE defaults to constant_liar=True: running trials count as bad guesses,
        # which keeps concurrent workers from piling onto one region. Options such as
        # multivariate are "experimental" in Optuna: hpo's choice, not news every trial.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return TPESampler(seed=seed, **spec.sampler.options())

    return make


def _random(spec: StudySpec) -> Callable[[int | None], BaseSampler]:
    from optuna.samplers import RandomSampler

    return lambda seed: RandomSampler(seed=seed)


SAMPLERS: dict[str, Callable[[StudySpec], Callable[[int | None], BaseSampler]]] = {
    "tpe": _tpe,
    "random": _random,
}
SAMPLER_NAMES = (*SAMPLERS, "grid")


class _Grid(GridSampler):
    """Optuna's grid sampler without its `study.stop()` once the grid is done.

    That call works only inside `study.optimize`, which hpo's loop does not use; the budget
    (`hpo.budget.next_move`) ends a grid study when every point is taken.
    """

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        pass


def make_sampler(spec: StudySpec) -> BaseSampler:
    """The sampler the spec names; a seeded one draws each trial from its own seed.

    The grid keeps one shared order (seeded by the study seed); the study lock keeps workers
    from taking one point twice. An unseeded sampler draws from the OS's entropy, different
    in every process.
    """
    if spec.sampler.type == "grid":
        return _Grid(grid(spec.search_space), seed=spec.sampler.seed)
    make = SAMPLERS[spec.sampler.type](spec)
    if spec.sampler.seed is None:
        return make(None)
    return TrialSeededSampler(make, spec.sampler.seed)
