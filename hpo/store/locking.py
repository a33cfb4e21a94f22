"""The per-study lock that makes starting a trial exact across workers.

Counting the study's trials and creating the next one must happen as one step, or two
workers that both see 39 of 40 finished start trial 40 twice (Optuna's MaxTrialsCallback
overshoots by up to workers - 1 that way) and a grid point can be handed out twice. The lock
is held from the count until the new trial exists: a PostgreSQL advisory lock, a MySQL named
lock, or a file lock beside a SQLite database (whose workers share one machine).

Every worker waits for this lock before every trial, so it is kept to few round trips: on a
server the count runs on the lock's own connection, and PostgreSQL's lock is a transaction
lock that the closing COMMIT releases. A worker waits for the lock in slices of
`POLL_S` seconds, so a signal stops it within one, and for `LOCK_TIMEOUT_S` at most.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import HpoError
from hpo.signals import StopFlag

if TYPE_CHECKING:
    from optuna.storages import RDBStorage

# The longest a worker waits for another's lock; a trial start holds it for milliseconds.
LOCK_TIMEOUT_S = 120.0
POLL_S = 0.2
_PG_LOCK_NOT_AVAILABLE = "55P03"


class LockTimeout(HpoError):
    """Another worker held the study lock for longer than any trial start takes."""


class StudyLock:
    """Acquire before counting; release once the new trial is created. Release is idempotent.

    `stop` (set by a signal) makes a waiting `acquire` give up and return False.
    """

    def __init__(self, backend: RDBStorage | None, study_name: str,
                 stop: StopFlag | None = None) -> None:
        self._backend = backend
        self._name = f"hpo:{study_name}"[:64]
        self._key = zlib.crc32(self._name.encode())  # PostgreSQL locks take an integer
        self._stop = stop or StopFlag()
        self._held: Any = None
        self._file_lock: Any = None

    @property
    def connection(self) -> Any:
        """The connection holding a server lock (count on it), else None."""
        return self._held if self._dialect in ("postgresql", "mysql", "mariadb") else None

    @property
    def _dialect(self) -> str:
        return self._backend.engine.dialect.name if self._backend is not None else "none"

    def acquire(self) -> bool:
        """Take the lock; False if `stop` was set while waiting. Raises LockTimeout."""
        if self._held is not None:
            return True
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        take = {"sqlite": self._take_file, "postgresql": self._take_postgres,
                "mysql": self._take_mysql, "mariadb": self._take_mysql}.get(self._dialect)
        while not self._stop.is_set():
            self._held = take() if take is not None else True  # in memory: nothing to share
            if self._held is not None:
                return True
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"waited {LOCK_TIMEOUT_S:.0f} s for the study lock {self._name!r}: another "
                    "worker held it all that time, though a trial start holds it for "
                    "milliseconds; look for a hung `hpo run` on this study and stop it"
                )
        return False

    def _take_file(self) -> Any:
        import filelock

        if self._file_lock is None:
            path = Path(self._backend.engine.url.database).with_suffix(".hpo-lock")
            self._file_lock = filelock.FileLock(path, thread_local=False)
        try:
            self._file_lock.acquire(timeout=POLL_S, cancel_check=self._stop.is_set)
        except filelock.Timeout:
            return None
        return self._file_lock

    def _take_postgres(self) -> Any:
        from sqlalchemy import text
        from sqlalchemy.exc import OperationalError

        connection = self._backend.engine.connect()
        try:
            # Each lasts until the transaction this begins ends, in release(). A free lock is
            # taken in one round trip; only a held one is waited for, `POLL_S` at a time.
            if connection.execute(text("SELECT pg_try_advisory_xact_lock(:key)"),
                                  {"key": self._key}).scalar():
                return connection
            connection.execute(text(f"SET LOCAL lock_timeout = '{int(POLL_S * 1000)}ms'"))
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": self._key})
            return connection
        except OperationalError as e:
            connection.close()
            if getattr(e.orig, "sqlstate", None) == _PG_LOCK_NOT_AVAILABLE:
                return None
            raise
        except BaseException:
            connection.close()
            raise

    def _take_mysql(self) -> Any:
        from sqlalchemy import text

        started = time.monotonic()
        connection = self._backend.engine.connect()
        try:
            got = connection.execute(text("SELECT GET_LOCK(:name, :wait)"),
                                     {"name": self._name, "wait": POLL_S}).scalar()
        except BaseException:
            connection.close()
            raise
        if got == 1:
            return connection
        connection.close()
        # A server that rounds the wait down to 0 answers at once: wait the rest here.
        self._stop.wait(max(0.0, POLL_S - (time.monotonic() - started)))
        return None

    def release(self) -> None:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        held, self._held = self._held, None
        if held is None or held is True:
            return
        if held is self._file_lock:
            held.release()
            return
        try:
            if self._dialect != "postgresql":
                held.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": self._name})
            held.commit()
        except SQLAlchemyError:
            # The connection died: its server released the lock with it. Raising here would
            # hide the error that killed it (what the caller retries on) behind this one.
            pass
        finally:
            held.close()  # closing ends the session, and any lock it still held

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
