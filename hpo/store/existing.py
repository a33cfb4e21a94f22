"""Opening studies that must already exist, for reading: by name, or a staged file's stages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hpo.errors import HpoError, StorageError
from hpo.spec import did_you_mean, stage_study_name
from hpo.store.storage import mask_url, open_existing_storage

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

    from hpo.spec import StageSpec, StudySpec


def load_study(storage: BaseStorage, name: str) -> optuna.Study | None:
    """The study of that name in the storage, or None where there is none."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def load_existing_study(
    spec: StudySpec | None, cli_url: str | None = None, study_name: str | None = None
) -> optuna.Study:
    """Open a study that must already exist, for reading (status, export)."""
    storage, url = open_existing_storage(spec, cli_url)
    study_name = study_name or spec.name
    study = load_study(storage, study_name)
    if study is None:
        raise no_such_study(storage, url, study_name)
    return study


def no_such_study(storage: BaseStorage, url: str, study_name: str) -> StorageError:
    """The error for a study name the storage does not hold, listing the names it does."""
    names = [s.study_name for s in storage.get_all_studies()]
    return StorageError(f"no study named {study_name!r} in {mask_url(url)}; "
                        f"{did_you_mean(study_name, names)}it has: "
                        f"{', '.join(names) or 'no studies'}")


def stage_studies(spec: StudySpec, cli_url: str | None = None
                  ) -> list[tuple[StageSpec, optuna.Study | None]]:
    """Each stage with its study, None for a stage not started yet."""
    try:
        storage, _ = open_existing_storage(spec, cli_url)
        found = [(stage, load_study(storage, stage_study_name(spec.name, stage)))
                 for stage in spec.stages]
    except HpoError:  # no database yet
        found = [(stage, None) for stage in spec.stages]
    if not any(study for _, study in found):
        first = stage_study_name(spec.name, spec.stages[0])
        raise HpoError(f"no stage of {spec.source.name} has started: no study {first!r} yet; "
                       "run `hpo run` on the study file first")
    return found


def started_stage_studies(spec: StudySpec, cli_url: str | None = None
                          ) -> list[tuple[StageSpec, optuna.Study]]:
    """The stages that have started, in order, with their studies (at least one)."""
    return [(stage, study) for stage, study in stage_studies(spec, cli_url) if study is not None]


def existing_study(spec: StudySpec | None, cli_url: str | None = None,
                   name: str | None = None) -> tuple[optuna.Study, StageSpec | None]:
    """The existing study a file (or `--storage` and `name`) names, and its stage: of a staged
    file, the latest stage started unless `name` picks a study."""
    if spec is not None and spec.stages is not None and name is None:
        stage, study = started_stage_studies(spec, cli_url)[-1]
        return study, stage
    return load_existing_study(spec, cli_url, name), None
