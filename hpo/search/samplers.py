"""Sampler names of the study file -> Optuna samplers whose draws are seeded per trial.

Workers share nothing but the database, so a sampler seeded once per process makes every
worker started with the same study file propose the same trials. Instead, a trial's random
draws are seeded by (study seed, trial number): trial numbers are unique within a study, so
no two workers draw alike, and a seeded study proposes the same random trials whatever the
number of workers and whichever worker runs which trial. (TPE past its startup trials also
depends on which trials have finished, which no seed can fix across workers; so do GP and
CMA-ES past their first trials.) The grid and qmc samplers keep one order for the whole
study instead.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.samplers import BaseSampler, GridSampler, QMCSampler

from hpo.spec import auto_needs_tpe
from hpo.spec.distributions import distribution, grid
from hpo.store import optuna_compat

if TYPE_CHECKING:
    from optuna import Study
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial, TrialState

    from hpo.spec import StudySpec

logger = logging.getLogger("hpo")


def trial_seed(study_seed: int, trial_number: int) -> int:
    """The seed of one trial's draws: well mixed, so neighbouring trials are unrelated."""
    return int(np.random.SeedSequence([study_seed, trial_number]).generate_state(1)[0])


class _Delegating(BaseSampler):
    """A sampler that hands each call to the sampler `_for(trial)` picks for that trial."""

    def _for(self, trial: FrozenTrial) -> BaseSampler:
        raise NotImplementedError

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


class TrialSeededSampler(_Delegating):
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


Make = Callable[[int | None], BaseSampler]  # builds a sampler drawing from this seed


def _seeded(make: Make, spec: StudySpec) -> BaseSampler:
    """One sampler for an unseeded study (the OS's entropy, different in every process);
    a seeded study's sampler makes one per trial, from (study seed, trial number)."""
    seed = spec.sampler.seed
    return make(None) if seed is None else TrialSeededSampler(make, seed)


@contextmanager
def _experimental_ok() -> Iterator[None]:
    # Optuna marks some samplers and options "experimental": hpo's choice, not news each trial.
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


def _tpe(spec: StudySpec) -> BaseSampler:
    from optuna.samplers import TPESampler

    # Optuna 5's TPE defaults to constant_liar=True: running trials count as bad guesses,
    # which keeps concurrent workers from piling onto one region.
    options = spec.sampler.options()

    def make(seed: int | None) -> BaseSampler:
        with _experimental_ok():
            return TPESampler(seed=seed, **options)

    return _seeded(make, spec)


def _random(spec: StudySpec) -> BaseSampler:
    from optuna.samplers import RandomSampler

    return _seeded(lambda seed: RandomSampler(seed=seed), spec)


def _gp(spec: StudySpec) -> BaseSampler:
    from optuna.samplers import GPSampler

    # A sampler made per trial refits the GP's kernel from its defaults rather than from the
    # last trial's fit (GPSampler's `_gprs_cache_list`): the same model, a little more work.
    # Running trials' GP proposals are shared through trial system attrs, so workers' qLogEI
    # sees what the others are trying.
    return _seeded(lambda seed: GPSampler(seed=seed), spec)


def _cmaes(spec: StudySpec) -> BaseSampler:
    from optuna.samplers import CmaEsSampler

    # CMA-ES keeps its state in the trials (system attrs `cmawm:optimizer:*`, `cmawm:generation`,
    # `x_for_tell`) and restores it from the last completed trial that stored it, so a sampler
    # made per trial continues the same search; each trial's ask reseeds the optimizer anyway.
    # The margin keeps int and stepped entries from collapsing onto a single value.
    def make(seed: int | None) -> BaseSampler:
        with _experimental_ok():
            return CmaEsSampler(seed=seed, with_margin=True)

    return _seeded(make, spec)


def study_scramble_seed(study: Study) -> int:
    """The Sobol scramble of an unseeded qmc study: the same in every worker (they read the
    same study name and storage id), different for another study."""
    digest = hashlib.sha256(
        f"{study.study_name}\0{optuna_compat.study_id(study)}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class _Sobol(QMCSampler):
    """Optuna's QMC sampler, scrambled Sobol, where trial n takes point n of one sequence.

    Optuna's QMCSampler numbers its points with a counter in the study's system attrs, read
    and written without a lock: two workers asking at once can take the same point (hpo lets
    the study lock go as `ask` starts). Trial numbers are unique, so numbering by them cannot
    repeat a point, and a study draws the same points whatever its workers. The search space
    is the spec's from the first trial on, where Optuna's infers it from the first finished
    trial (drawing that one at random); so a conditional entry takes its coordinate of the
    trial's point too, when its condition holds. The scramble must be one for the whole
    study: a seeded study's is its seed; Optuna draws an unseeded one per process and stores
    it nowhere (only the counter, keyed by a hash of it), so every worker would walk its own
    sequence; an unseeded hpo study scrambles by `study_scramble_seed` instead.
    """

    def __init__(self, space: dict[str, BaseDistribution], seed: int | None,
                 independent_sampler: BaseSampler) -> None:
        with _experimental_ok():
            super().__init__(qmc_type="sobol", scramble=True, seed=seed,
                             independent_sampler=independent_sampler,
                             warn_asynchronous_seeding=False)
        self._space = space
        self._scramble_from_study = seed is None
        self._sample_id = 0

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return dict(self._space)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if self._scramble_from_study:
            self._seed = study_scramble_seed(study)
        self._sample_id = trial.number
        return super().sample_relative(study, trial, search_space)

    def _find_sample_id(self, study: Study, search_space: dict[str, BaseDistribution]) -> int:
        return self._sample_id


def _qmc(spec: StudySpec) -> BaseSampler:
    from optuna.samplers import RandomSampler

    # Single-valued entries (fixed by `hpo refine` or a stage) are not drawn by any sampler.
    space = {name: d for name, entry in spec.search_space.items()
             if not (d := distribution(entry)).single()}
    # Parameters an objective suggests beyond the search space are drawn at random, seeded
    # per trial like the random sampler's so that workers differ.
    return _Sobol(space, spec.sampler.seed,
                  _seeded(lambda seed: RandomSampler(seed=seed), spec))


# The auto sampler's switch from GP to TPE, as the Optuna team's AutoSampler (optunahub) does:
# GP's fit grows with the cube of the trials it has seen and slows down past this many.
AUTO_GP_TRIALS = 250
AUTO_SAMPLER_ATTR = "auto:sampler"  # the trial system attr AutoSampler records its pick in


class AutoSampler(_Delegating):
    """GP for the first `AUTO_GP_TRIALS` trials, TPE after; TPE throughout when `gp` is None.

    The pick goes by trial number, not by the count of finished trials: every worker picks
    the same sampler for a trial whatever the others are doing, with no query to make, and
    numbers (failed and carried trials included) run ahead of finished trials, so GP never
    fits more than AUTO_GP_TRIALS of them. Each pick is logged once per worker and recorded
    in the trial's system attr `auto:sampler`, as AutoSampler does.
    """

    def __init__(self, gp: BaseSampler | None, tpe: BaseSampler, why: str) -> None:
        self._gp = gp
        self._tpe = tpe
        self._why = why
        self._said: str | None = None

    def _for(self, trial: FrozenTrial) -> BaseSampler:
        if self._gp is not None and trial.number < AUTO_GP_TRIALS:
            self._say("GPSampler", f"sampler auto: GP for trials 0-{AUTO_GP_TRIALS - 1}, TPE "
                      f"after ({self._why})")
            return self._gp
        if self._gp is None:
            self._say("TPESampler", f"sampler auto: TPE ({self._why})")
        else:
            self._say("TPESampler", f"sampler auto: TPE from trial {AUTO_GP_TRIALS} on (GP "
                      "slows down with more trials)")
        return self._tpe

    def _say(self, pick: str, message: str) -> None:
        if self._said != pick:
            self._said = pick
            logger.info("%s", message)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        sampler = self._for(trial)
        optuna_compat.study_storage(study).set_trial_system_attr(
            optuna_compat.trial_id(trial), AUTO_SAMPLER_ATTR, self._said or "")
        sampler.before_trial(study, trial)


def _auto(spec: StudySpec) -> BaseSampler:
    from optuna.samplers import TPESampler

    def make_tpe(seed: int | None) -> BaseSampler:
        # As AutoSampler configures it: multivariate, with the constant liar for workers.
        with _experimental_ok():
            return TPESampler(seed=seed, multivariate=True, constant_liar=True)

    tpe = _seeded(make_tpe, spec)
    why_tpe = auto_needs_tpe(spec.search_space)
    if why_tpe:
        return AutoSampler(None, tpe, why_tpe)
    return AutoSampler(_gp(spec), tpe, "the search space is all numeric")


class _Grid(GridSampler):
    """Optuna's grid sampler without its `study.stop()` once the grid is done.

    That call works only inside `study.optimize`, which hpo's loop does not use; the budget
    (`hpo.store.budget.next_move`) ends a grid study when every point is taken.
    """

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        pass


def _grid(spec: StudySpec) -> BaseSampler:
    # One shared order (seeded by the study seed); the study lock keeps workers from taking
    # one point twice.
    return _Grid(grid(spec.search_space), seed=spec.sampler.seed)


# Each name of `sampler.type` (hpo.spec.SamplerName) -> the sampler it makes for a spec.
SAMPLERS: dict[str, Callable[[StudySpec], BaseSampler]] = {
    "tpe": _tpe,
    "random": _random,
    "grid": _grid,
    "gp": _gp,
    "cmaes": _cmaes,
    "qmc": _qmc,
    "auto": _auto,
}


def make_sampler(spec: StudySpec) -> BaseSampler:
    """The sampler the spec names; a seeded one draws each trial from its own seed.

    The grid and qmc samplers keep one order for the whole study instead (see `_Sobol`).
    """
    return SAMPLERS[spec.sampler.type](spec)
