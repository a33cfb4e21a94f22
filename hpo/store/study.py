"""Create or load the study a spec describes; its stored identity, checked under the lock.

The spec a study was created from is stored in it (user attr `hpo_spec`, without run-only
fields and without defaults, see `StudySpec.identity`) with the version of that form
(`hpo_spec_version`). Every worker compares its own spec with the stored one and is refused,
naming the first differing field, when they disagree. The first worker writes it, under the
study lock, so two workers starting a new study with different files cannot both write theirs.

Versions: 1 (hpo 0.1, no version attr) stored every default and left the heartbeat out;
2 stores only what differs from the defaults, heartbeat included. When a later hpo changes a
default, it bumps SPEC_VERSION and its migration writes the old default into older
identities, so an existing study keeps running as it was created, or is refused by name.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import optuna
from pydantic import ValidationError

from hpo.errors import StorageError
from hpo.spec import StudySpec
from hpo.store import budget, carry
from hpo.store.optuna_compat import ClaimingStudy, study_storage
from hpo.store.storage import mask_url

if TYPE_CHECKING:
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler
    from optuna.storages import BaseStorage

    from hpo.store.locking import StudyLock

SPEC_ATTR = "hpo_spec"
SPEC_VERSION_ATTR = "hpo_spec_version"
SPEC_VERSION = 2


class Interrupted(Exception):
    """A signal arrived while the worker waited to open the study."""


def first_difference(stored: Any, current: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first field (dotted path) where two identities differ, with both values."""
    if isinstance(stored, dict) and isinstance(current, dict):
        for key in list(stored) + [k for k in current if k not in stored]:
            found = first_difference(
                stored.get(key), current.get(key), f"{path}.{key}" if path else key
            )
            if found:
                return found
        return None
    return None if stored == current else (path, stored, current)


def upgraded_identity(stored: dict[str, Any], version: int, current: dict[str, Any]
                      ) -> dict[str, Any]:
    """A stored identity in this hpo's form, migrated from the version it was written in."""
    if version < 2:
        # Version 1 held every default, and no heartbeat (each worker used its own): read it
        # through today's models, with this worker's heartbeat, and drop the defaults.
        data = {**stored, "n_trials": 1}
        if "heartbeat" in current:
            data["heartbeat"] = current["heartbeat"]
        objective = data.get("objective")
        if isinstance(objective, dict) and objective.get("callable"):
            # ... and the trainer's sections at their defaults, which a callable now refuses.
            data["objective"] = {k: v for k, v in objective.items()
                                 if k not in ("data", "model", "train")}
        try:
            stored = StudySpec.model_validate(data).identity()
        except ValidationError:
            pass  # a field hpo no longer has: compared as it is, and refused by name
    return stored


def _shown(value: Any, default: Any) -> str:
    """A compared value as the message shows it: one an identity leaves out is the default."""
    if value is not None:
        return repr(value)
    return "not set (the default)" if default is None else f"{default!r} (the default)"


def _default_at(spec: StudySpec, where: str) -> Any:
    """The spec's value at a dotted path (its default, where its identity leaves it out)."""
    value: Any = spec.normalized()
    for key in where.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def check_identity(study: optuna.Study, spec: StudySpec, url: str) -> None:
    """Store the spec in a new study, or refuse a spec that differs from the stored one."""
    attrs = study.user_attrs
    stored, current = attrs.get(SPEC_ATTR), spec.identity()
    if stored is None:
        if sum(budget.count_by_state(study).values()):
            raise StorageError(
                f"study {spec.name!r} in {mask_url(url)} exists but was not created by hpo; "
                "choose another `name:` in the study file"
            )
        storage = study_storage(study)
        parent = carry.parent_study(storage, spec, mask_url(url)) if spec.carry_from else None
        study.set_user_attr(SPEC_ATTR, current)
        study.set_user_attr(SPEC_VERSION_ATTR, SPEC_VERSION)
        _set_up(study, spec, parent)
        return
    version = attrs.get(SPEC_VERSION_ATTR, 1)
    if version > SPEC_VERSION:
        raise StorageError(
            f"study {spec.name!r} in {mask_url(url)} was written by a newer hpo (spec version "
            f"{version}, this one knows {SPEC_VERSION}); upgrade hpo on this machine"
        )
    upgraded = upgraded_identity(stored, version, current)
    difference = first_difference(upgraded, current)
    if difference:
        where, old, new = difference
        # An identity leaves out what is at its default: where the file's leaves a field out,
        # the spec's value there is that default (a field only the stored one lacks: unknown).
        default = _default_at(spec, where) if new is None else None
        raise StorageError(
            f"study {spec.name!r} in {mask_url(url)} was created from a different spec: "
            f"{where} is {_shown(old, default)} there but {_shown(new, default)} in "
            f"{spec.source.name}; to start a new study, change `name:` in the file (or delete "
            f"the old one: hpo delete {spec.source.name})"
        )
    if version < SPEC_VERSION:
        study.set_user_attr(SPEC_ATTR, upgraded)
        study.set_user_attr(SPEC_VERSION_ATTR, SPEC_VERSION)
    if spec.carry_from and carry.CARRIED_ATTR not in attrs:  # its first worker died setting up
        _set_up(study, spec, carry.parent_study(study_storage(study), spec, mask_url(url)))


def _set_up(study: optuna.Study, spec: StudySpec, parent: optuna.Study | None) -> None:
    """What a new study gets once its identity is stored: carried trials (first, so they
    take its first numbers), the file's enqueued trials, the metric's name; then, for a
    carrying study, the mark that its setup is whole. Each step is skipped where it was done,
    so a worker that finds the mark missing (the first one died part-way) finishes it."""
    carried = carry.carry_over(study, spec, parent) if parent is not None else 0
    queued = ([t.system_attrs.get("fixed_params") for t in study.get_trials(deepcopy=False)
               if t.user_attrs.get("enqueued_by") == "study file"] if parent else [])
    for params in spec.enqueue:  # run first: claimed before the sampler proposes any
        if params not in queued:
            study.enqueue_trial(params, user_attrs={"enqueued_by": "study file"})
    with warnings.catch_warnings():  # "experimental" in Optuna: hpo's choice, not news
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([spec.metric])  # the dashboard shows it, not "Objective 0"
    if parent is not None:
        carry.mark_carried(study, parent, carried)


def create_or_load_study(spec: StudySpec, storage: BaseStorage, url: str, lock: StudyLock,
                         sampler: BaseSampler, pruner: BasePruner) -> ClaimingStudy:
    """The spec's study, created on first run; a study made from another spec is refused."""

    def open_study() -> ClaimingStudy:
        return ClaimingStudy(study_name=spec.name, storage=storage, sampler=sampler,
                             pruner=pruner)

    try:
        study = open_study()
    except KeyError:  # the first worker: create it, then open it like any other
        if spec.carry_from:  # refused before anything is written when there is none
            carry.parent_study(storage, spec, mask_url(url))
        optuna.create_study(study_name=spec.name, storage=storage, direction=spec.direction,
                            load_if_exists=True)
        study = open_study()
    try:
        if not lock.acquire():
            raise Interrupted
        check_identity(study, spec, url)
    finally:
        lock.release()
    return study
