"""The per-study lock that makes starting a trial exact across workers.

Counting the study's trials and creating the next one must happen as one step, or two
workers that both see 39 of 40 finished start trial 40 twice (Optuna's MaxTrialsCallback
overshoots by up to workers - 1 that way) and a grid point can be handed out twice. The lock
is held from the count until the new trial exists: a PostgreSQL advisory lock, a MySQL named
lock, or a file lock beside a SQLite database (whose workers share one machine).

Every worker waits for this lock before every trial, so it is kept to few round trips: on a
server the count runs on the lock's own connection, and PostgreSQL's lock is a transaction
lock that the closing COMMIT releases.
"""

from __future__ import annotations

import fcntl
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.storages import RDBStorage

# A worker waits this long for another's lock before the database is deemed unreachable.
LOCK_TIMEOUT_S = 120


class StudyLock:
    """Acquire before counting; release once the new trial is created. Release is idempotent."""

    def __init__(self, backend: RDBStorage | None, study_name: str) -> None:
        self._backend = backend
        self._name = f"hpo:{study_name}"[:64]
        self._key = zlib.crc32(self._name.encode())  # PostgreSQL locks take an integer
        self._held: Any = None

    @property
    def connection(self) -> Any:
        """The connection holding a server lock (count on it), else None."""
        return None if self._held is True or self._dialect == "sqlite" else self._held

    @property
    def _dialect(self) -> str:
        return self._backend.engine.dialect.name if self._backend is not None else "none"

    def acquire(self) -> None:
        from sqlalchemy import text

        if self._held is not None:
            return
        if self._dialect == "sqlite":
            path = Path(self._backend.engine.url.database).with_suffix(".hpo-lock")
            handle = path.open("a")
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._held = handle
        elif self._dialect == "postgresql":
            connection = self._backend.engine.connect()
            # Held until the transaction this begins ends, in release().
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": self._key})
            self._held = connection
        elif self._dialect in ("mysql", "mariadb"):
            connection = self._backend.engine.connect()
            got = connection.execute(text("SELECT GET_LOCK(:name, :timeout)"),
                                     {"name": self._name, "timeout": LOCK_TIMEOUT_S}).scalar()
            if got != 1:
                connection.close()
                raise TimeoutError(f"could not take the study lock {self._name!r} in "
                                   f"{LOCK_TIMEOUT_S} s")
            self._held = connection
        else:
            self._held = True  # in-memory storage: one process, nothing to share

    def release(self) -> None:
        from sqlalchemy import text

        held, self._held = self._held, None
        if held is None or held is True:
            return
        if self._dialect == "sqlite":
            fcntl.flock(held, fcntl.LOCK_UN)
            held.close()
            return
        try:
            if self._dialect != "postgresql":
                held.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": self._name})
            held.commit()
        finally:
            # A connection that lost its server takes its session locks with it.
            held.close()
