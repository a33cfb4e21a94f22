"""The spec's study as a worker opens it: with its sampler and pruner, created on first use,
its stored identity checked under the study lock (`hpo.store.study`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from hpo.search.pruners import make_pruner
from hpo.search.samplers import make_sampler
from hpo.store.study import create_or_load_study

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from hpo.spec import StudySpec
    from hpo.store.locking import StudyLock
    from hpo.store.optuna_compat import ClaimingStudy


def worker_study(spec: StudySpec, storage: BaseStorage, url: str,
                 lock: StudyLock) -> ClaimingStudy:
    """The spec's study with the sampler and pruner the spec names."""
    return create_or_load_study(spec, storage, url, lock, make_sampler(spec),
                                make_pruner(spec.pruner))


@contextmanager
def opened_study(spec: StudySpec, cli_url: str | None = None
                 ) -> Iterator[tuple[ClaimingStudy, str]]:
    """The spec's study and its storage URL, for writing outside a worker's loop: created
    on first use as a worker creates it, refused if made from another spec. The storage's
    connections are closed when the block ends."""
    from hpo.store.locking import StudyLock
    from hpo.store.optuna_compat import rdb_backend
    from hpo.store.storage import dispose, open_storage, resolve_storage_url

    url = resolve_storage_url(spec, cli_url)
    storage = open_storage(url)
    try:
        lock = StudyLock(rdb_backend(storage), spec.name)
        yield worker_study(spec, storage, url, lock), url
    finally:
        dispose(storage)
