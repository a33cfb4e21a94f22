"""Where a study lives: URL resolution, SQLite settings, engine options, password masking."""

from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.errors import StorageError

if TYPE_CHECKING:
    from optuna.storages import BaseStorage, RDBStorage

    from hpo.spec import StudySpec

STORAGE_ENV = "HPO_STORAGE"
# Seconds a SQLite writer waits for another's lock before giving up ("database is locked").
SQLITE_BUSY_TIMEOUT = 60
# Seconds to wait for a database server to accept a connection.
CONNECT_TIMEOUT = 10
TABLE_RACE_RETRIES = 5


def default_sqlite_url(spec: StudySpec) -> str:
    """`sqlite:///<spec's folder>/<name>.db`, the embedded default."""
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", spec.name) + ".db"
    return f"sqlite:///{spec.source.parent / filename}"


def resolve_storage_url(spec: StudySpec, cli_url: str | None = None) -> str:
    """`--storage`, then $HPO_STORAGE, then the file's `storage:`, else SQLite beside the file.

    A relative SQLite path in the file's `storage:` is relative to the study file, like every
    other path in it (so `hpo refine` can point the next stage's file at the same database).
    """
    url = cli_url or os.environ.get(STORAGE_ENV)
    if url:
        return url
    if spec.storage:
        path = sqlite_path(spec.storage)
        if path is not None and not path.is_absolute():
            return f"sqlite:///{spec.source.parent / path}"
        return spec.storage
    return default_sqlite_url(spec)


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, safe to print and log."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def url_password(url: str) -> str | None:
    """The password in a storage URL, if it has one (to scrub it from any text)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password
    except (ArgumentError, ValueError):
        found = re.search(r"://[^:/@]*:([^@]*)@", url)
        return found.group(1) if found else None


def scrub(text: str, url: str) -> str:
    """`text` with the URL's password replaced by ***."""
    password = url_password(url)
    return text.replace(str(password), "***") if password else text


def describe_error(error: BaseException, url: str) -> str:
    """The first line of a database error, safe to print: the URL's password scrubbed."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return scrub(text, url)


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return None
    return Path(url.removeprefix("sqlite:///").split("?", 1)[0])


def _prepare_sqlite(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # WAL lets a reader (the dashboard) read while a worker writes, without "database is
    # locked". The mode is stored in the file, so setting it once covers every later
    # connection; synchronous stays at its default, FULL, so each commit is durable.
    with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    connection.close()


def engine_options(url: str) -> dict:
    """SQLAlchemy engine options for a storage URL."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT}}
    # Many workers share a server: check a pooled connection before use (a restarted server
    # leaves dead ones), keep few per worker, and give up on a connection attempt in time.
    options = {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2, "pool_recycle": 1800}
    if url.startswith(("postgresql", "mysql")):
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    return options


def _create_rdb_storage(url: str) -> RDBStorage:
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    from hpo.store.optuna_compat import install_quick_schema_check

    install_quick_schema_check()

    # Workers that start together on a new database race to create Optuna's tables; the
    # losers see "already exists" and only need to look again once the winner is done. On
    # SQLite a loser may instead see "database is locked" at once, without the busy timeout:
    # its read transaction cannot become a write after the winner's commit.
    for attempt in range(TABLE_RACE_RETRIES):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_options(url))
        except (IntegrityError, OperationalError, ProgrammingError) as e:
            raced = "already exists" in str(e) or "database is locked" in str(e)
            if not raced and not isinstance(e, IntegrityError):
                raise
            if attempt == TABLE_RACE_RETRIES - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def open_storage(url: str) -> RDBStorage:
    """Open (creating tables if needed) the Optuna RDB storage at `url`.

    Heartbeats are hpo's own (`hpo.store.heartbeat`), so Optuna's are left off: its `ask`
    would warn outside `optimize`, and its reaper skips trials that never beat.
    """
    path = sqlite_path(url)
    try:
        if path is not None:
            _prepare_sqlite(path)
        return _create_rdb_storage(url)
    except ModuleNotFoundError as e:
        raise StorageError(
            f"storage {mask_url(url)}: its database driver is not installed ({e.name}); "
            "install hpo[server] for PostgreSQL and MySQL"
        ) from e
    except Exception as e:  # SQLAlchemy and drivers raise many kinds; all mean "cannot open".
        raise StorageError(f"cannot open storage {mask_url(url)}: {describe_error(e, url)}"
                           ) from e


def dispose(storage: BaseStorage) -> None:
    """Close the storage's pooled connections (a worker is done with it)."""
    from hpo.store.optuna_compat import rdb_backend

    backend = rdb_backend(storage)
    if backend is not None:
        backend.engine.dispose()


def open_existing_storage(spec: StudySpec | None, cli_url: str | None = None
                          ) -> tuple[RDBStorage, str]:
    """The storage (and its URL) of studies that must already exist, for reading: a SQLite
    file that is not there is an error, not a new empty database."""
    url = resolve_storage_url(spec, cli_url) if spec is not None else cli_url
    assert url is not None
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise StorageError(f"no study database at {path}; run `hpo run` on the study file first")
    return open_storage(url), url
