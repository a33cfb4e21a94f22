"""Carrying a parent study's finished trials into a refined one, as evidence for its sampler.

A refined study (`hpo refine`'s file, or a stage of `stages:` that trains as the stage before
did) starts with every COMPLETE and PRUNED trial of its parent whose parameters lie inside
the new search space: the same values, intermediate values and state, the new space's
distributions, and the user attr `carried_from: {study, number}`. Without them TPE would
throw away the parent's evidence and start over in a narrower box, which loses to one flat
search of the same total budget.

Carried trials are evidence, not work done: they do not count against `n_trials`
(`hpo.store.budget.finished_count` subtracts them) and every summary shows them apart. The first
worker carries them under the study lock, while it creates the study, so several workers
starting together carry exactly once; a worker that finds the study created but the carry
unfinished (its first worker died part-way) adds the trials still missing, and finishes the
rest of the new study's setup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

from hpo.errors import StorageError

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

    from hpo.spec import Param, StudySpec

CARRIED_FROM = "carried_from"  # a carried trial's user attr: {"study": name, "number": n}
CARRIED_ATTR = "hpo_carried"  # the study's user attr once carried: {"from": name, "count": n}


def is_carried(trial: FrozenTrial) -> bool:
    """Whether the trial was carried over from a parent study (rather than run in this one)."""
    return CARRIED_FROM in trial.user_attrs


def carried_count(study: optuna.Study) -> int:
    """How many of the study's trials were carried over (0 for a study that carried none)."""
    return int(study.user_attrs.get(CARRIED_ATTR, {}).get("count", 0))


def inside(params: dict[str, Any], space: dict[str, Param]) -> bool:
    """Whether a trial with these params could have been drawn from `space`: each entry is
    present exactly when its `when:` conditions hold, and then takes a value it can take.

    Params outside the space (an objective's own `trial.suggest_*` calls) are not the
    space's to judge; they are carried with their own distributions."""
    from hpo.spec import fits
    from hpo.spec.distributions import suggestion_order

    for name in suggestion_order(space):
        entry = space[name]
        applies = all(params.get(parent) in allowed
                      for parent, allowed in (entry.when or {}).items())
        if applies != (name in params) or (applies and not fits(entry, params[name])):
            return False
    return True


def carriable(parent: optuna.Study, space: dict[str, Param]) -> tuple[list[FrozenTrial], int]:
    """The parent's finished (COMPLETE or PRUNED) trials inside `space`, and how many it has
    finished in all."""
    finished = parent.get_trials(deepcopy=False,
                                 states=(TrialState.COMPLETE, TrialState.PRUNED))
    return [t for t in finished if inside(t.params, space)], len(finished)


def _carried_copy(trial: FrozenTrial, parent: str, space: dict[str, Param]) -> FrozenTrial:
    from optuna.trial import create_trial

    from hpo.spec.distributions import distribution

    copy = create_trial(
        state=trial.state, values=trial.values, params=trial.params,
        distributions={name: distribution(space[name]) if name in space
                       else trial.distributions[name] for name in trial.params},
        user_attrs={**trial.user_attrs, CARRIED_FROM: {"study": parent, "number": trial.number}},
        intermediate_values=trial.intermediate_values)
    copy.datetime_start, copy.datetime_complete = trial.datetime_start, trial.datetime_complete
    return copy


def parent_study(storage: BaseStorage, spec: StudySpec, where: str) -> optuna.Study:
    """The study `spec.carry_from` names, in `storage` (`where`, masked, for the message);
    refused in one line when there is none."""
    import optuna

    try:
        return optuna.load_study(study_name=spec.carry_from, storage=storage)
    except KeyError as e:
        raise StorageError(
            f"{spec.source.name}: carry_from: no study {spec.carry_from!r} in {where} to "
            "carry trials from; run that study first, or remove carry_from to start empty"
        ) from e


def carry_over(study: optuna.Study, spec: StudySpec, parent: optuna.Study) -> int:
    """Add the parent's finished trials inside the spec's space to `study`, those not carried
    yet (a worker that died part-way carried the rest), and return how many it holds.

    Call it under the study lock, so that workers starting together carry once; the caller
    marks the setup whole (`mark_carried`) once everything else a new study gets is there."""
    done = {t.user_attrs[CARRIED_FROM]["number"] for t in study.get_trials(deepcopy=False)
            if is_carried(t)}
    trials, _ = carriable(parent, spec.search_space)
    new = [_carried_copy(t, parent.study_name, spec.search_space) for t in trials
           if t.number not in done]
    study.add_trials(new)
    return len(done) + len(new)


def mark_carried(study: optuna.Study, parent: optuna.Study, count: int) -> None:
    """Record that the carry is whole: how many trials the budget leaves out."""
    study.set_user_attr(CARRIED_ATTR, {"from": parent.study_name, "count": count})
