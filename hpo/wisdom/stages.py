"""Staged studies: `stages:` runs coarse to fine in one `hpo run`, one Optuna study a stage.

Stage k's study is `<name>-<stage name>` in the same storage. Its search space is derived
from the study file and, past the first stage, from the stage before, as `hpo refine` does:
entries searched there are refined from its top trials, entries searched before but not now
are fixed at the best value so far. A stage that trains as the one before starts with that
stage's finished trials inside its space, carried over (`hpo.store.carry`); one that trains
otherwise (more epochs, say) measures something else, so it starts from the best trial,
enqueued. A stage starts once the one before has all its trials; every worker derives the
same next stage from the same finished trials, and a worker that finds a stage's study
already created takes its stored search space, so workers always agree. Each stage resumes
and shares its budget among workers like any study.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from hpo.errors import HpoError, SpecError
from hpo.spec import CategoricalParam, StudySpec, describe_error, fits, stage_study_name
from hpo.store.existing import load_study
from hpo.wisdom.refine import (
    MIN_COMPLETE,
    Refinement,
    entry_data,
    prune_conditions,
    refine_space,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    import optuna
    from optuna.storages import BaseStorage

    from hpo.spec import StageSpec
    from hpo.worker.runner import RunOptions, RunResult


logger = logging.getLogger("hpo")


@dataclass
class StageResult:
    stage: str
    spec: StudySpec
    result: RunResult


def _single(value: Any) -> dict[str, Any]:
    return {"type": "categorical", "choices": [value]}


def _is_searched(entry: Any) -> bool:
    return not (isinstance(entry, CategoricalParam) and len(entry.choices) == 1)


def derived_space(spec: StudySpec, index: int, previous: StudySpec | None,
                  previous_study: optuna.Study | None) -> tuple[dict, dict[str, Any]]:
    """Stage `index`'s search space and the parameters to start it from."""
    stage = spec.stages[index]
    params = list(spec.search_space) if stage.params is None else stage.params
    refinement = _refinement(previous, previous_study) if previous is not None else None
    best = refinement.enqueue if refinement is not None else {}
    space: dict[str, dict[str, Any]] = {}
    for name, entry in spec.search_space.items():
        before = previous.search_space.get(name) if previous is not None else None
        if name in stage.fixed:
            space[name] = _single(stage.fixed[name])
        elif name in params:
            refined = refinement.space.get(name) if refinement is not None else None
            searched_before = before is not None and _is_searched(before)
            space[name] = refined if searched_before and refined else entry_data(entry)
        elif name in best:
            space[name] = _single(best[name])  # searched before: held at the best so far
        elif before is not None:
            space[name] = entry_data(before)  # fixed before: stays fixed
        if name in space and entry.when and "when" not in space[name]:
            space[name]["when"] = {k: list(v) for k, v in entry.when.items()}
    prune_conditions(space, {})
    enqueue = dict(best) if refinement is not None else {}
    return space, enqueue


def _refinement(previous: StudySpec, study: optuna.Study) -> Refinement:
    """The stage before, refined; carried over as it was when it has too few completed
    trials to read (its trials were pruned or failed), starting from its best if any."""
    from hpo.report.trials import ranked

    complete = ranked(study, study.get_trials(deepcopy=False))
    if len(complete) >= MIN_COMPLETE:
        return refine_space(previous, study)
    logger.warning("stage study %s has %d completed trials (< %d): its search space is "
                   "carried over unrefined", study.study_name, len(complete), MIN_COMPLETE)
    space = {name: entry_data(entry) for name, entry in previous.search_space.items()}
    best = dict(complete[0].params) if complete else {}
    return Refinement(space, {}, best, f"carried over from {study.study_name}")


def trains_as_before(spec: StudySpec, index: int) -> bool:
    """Whether stage `index` trains as the stage before it did, so that the earlier stage's
    trials measured what this one measures (more epochs would measure something else)."""
    if index == 0:
        return False
    base = spec.objective.train.model_dump() if spec.objective.trainer else {}

    def training(stage: StageSpec) -> dict[str, Any]:
        settings = {**base, **stage.train}
        settings.pop("pack", None)  # how many trials train at once changes no result
        return settings

    return training(spec.stages[index]) == training(spec.stages[index - 1])


def stage_spec(spec: StudySpec, index: int, space: dict[str, Any],
               enqueue: dict[str, Any], carry: bool | None = None) -> StudySpec:
    """The plain study spec of one stage: the file's, with the stage's name, space, budget.

    A stage that trains as the one before starts with that stage's finished trials inside
    its space (`hpo.store.carry`); one that trains otherwise starts from its best, enqueued.
    `carry` gives the choice a stored stage was created with (stages created before carrying
    existed never carry)."""
    stage = spec.stages[index]
    data = spec.model_dump(mode="json", exclude_none=True,
                           exclude={"stages", "n_trials", "enqueue", "search_space"})
    data.update(name=stage_study_name(spec.name, stage), n_trials=stage.n_trials,
                search_space=space)
    if trains_as_before(spec, index) if carry is None else carry:
        data["carry_from"] = stage_study_name(spec.name, spec.stages[index - 1])
        enqueue = {}  # the best is carried with the rest
    if stage.train:  # the built-in trainer's only (a callable's stage with one is refused)
        data["objective"]["train"] = {**data["objective"]["train"], **stage.train}
    where = f"{spec.source}: stages.{index} ({stage.name})"
    try:
        derived = StudySpec.model_validate(data)
        # Only what the new space can take: an entry searched anew is left to the sampler.
        start = {k: v for k, v in enqueue.items()
                 if k in derived.search_space and fits(derived.search_space[k], v)}
        queued = ([start] if start else []) if index else list(spec.enqueue)
        derived = StudySpec.model_validate({**data, "enqueue": queued})
    except ValidationError as e:
        raise SpecError("\n".join(f"{where}: {field}: {message}" for field, message in
                                  (describe_error(error, StudySpec) for error in e.errors())
                                  )) from e
    derived._source = spec.source
    return derived


def _with_limits(spec: StudySpec, space: dict[str, Any]) -> dict[str, Any]:
    """A stored space with the file's limits put back (they are not part of an identity)."""
    for name, entry in space.items():
        limits = getattr(spec.search_space.get(name), "limits", None)
        if limits is not None and entry.get("type") in ("float", "int"):
            entry["limits"] = limits.model_dump(exclude_none=True)
    return space


def finished(study: optuna.Study) -> int:
    from hpo.store import budget
    from hpo.store.carry import carried_count

    return budget.finished_count(budget.count_by_state(study), carried_count(study))


def stage_specs(spec: StudySpec, storage: BaseStorage) -> Iterator[StudySpec]:
    """Each stage's spec, in order. The next is derived only when asked for, which needs the
    stage before it finished: ask once it has run."""
    from hpo.store.study import SPEC_ATTR

    previous: StudySpec | None = None
    previous_study = None
    for index, stage in enumerate(spec.stages):
        if previous is not None:
            previous_study = load_study(storage, previous.name)
            done = finished(previous_study) if previous_study is not None else 0
            needed = spec.stages[index - 1].n_trials
            if done < needed:
                raise HpoError(f"stage {spec.stages[index - 1].name!r} has {done} of its "
                               f"{needed} finished trials; the next stage starts from it once "
                               "it has all")
        study = load_study(storage, stage_study_name(spec.name, stage))
        stored = study.user_attrs.get(SPEC_ATTR) if study is not None else None
        carry = None
        if stored is not None:  # another worker derived it first: take it as stored
            space = _with_limits(spec, dict(stored.get("search_space", {})))
            enqueue = (stored.get("enqueue") or [{}])[0]
            carry = "carry_from" in stored
        else:
            space, enqueue = derived_space(spec, index, previous, previous_study)
        previous = stage_spec(spec, index, space, enqueue, carry)
        yield previous


def run_staged(spec: StudySpec, options: RunOptions, workers: int = 1,
               debug: bool = False) -> list[StageResult]:
    """Run the stages in order (or only `options.stage`), each to its budget."""
    from hpo.store.storage import dispose, open_storage, resolve_storage_url
    from hpo.worker import runner

    if options.n_trials is not None:
        raise HpoError("--n-trials: a staged study sets n_trials in each stage of the file")
    # Every stage lives where the file's study would: stage names never pick a database.
    url = resolve_storage_url(spec, options.storage)
    options = replace(options, storage=url)
    timeout = options.timeout or spec.timeout
    started = time.perf_counter()
    names = [stage.name for stage in spec.stages]
    if options.stage is not None and options.stage not in names:
        raise HpoError(f"--stage {options.stage!r}: the file's stages are {', '.join(names)}")
    results: list[StageResult] = []
    storage = open_storage(url)
    try:
        for stage, derived in zip(spec.stages, stage_specs(spec, storage), strict=True):
            if options.stage is not None and stage.name != options.stage:
                continue
            left = None if timeout is None else timeout - (time.perf_counter() - started)
            if left is not None and left <= 0:
                break
            # Local workers are started on this stage alone; this process runs the next.
            stage_options = replace(options, timeout=left,
                                    stage=stage.name if workers > 1 else options.stage)
            if workers > 1:
                from hpo.worker.workers import run_local_workers

                result = run_local_workers(derived, stage_options, workers, debug)
            else:
                result = runner.run(derived, stage_options)
            results.append(StageResult(stage.name, derived, result))
            if result.stopped_by is not None or (result.study is not None
                                                and finished(result.study) < stage.n_trials):
                break  # a signal, or the timeout: the next `hpo run` resumes this stage
            if options.stage is not None:
                break  # a local worker of this one stage: its launcher runs the next
    finally:
        dispose(storage)
    return results
