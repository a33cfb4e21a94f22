"""The study lock on every backend: exclusion, stopping within a second, a bounded wait."""

from __future__ import annotations

import threading
import uuid

import pytest

from hpo.signals import StopFlag
from hpo.store import locking
from hpo.store.locking import LockTimeout, StudyLock
from hpo.store.optuna_compat import rdb_backend
from hpo.store.storage import dispose, open_storage
from tests.conftest import kill_on_server, wait_until


@pytest.fixture
def backend(storage_url):
    storage = open_storage(storage_url)
    yield rdb_backend(storage)
    dispose(storage)


def test_the_lock_keeps_a_second_holder_out_until_released(backend):
    name = f"t-{uuid.uuid4().hex[:8]}"
    holder, waiter = StudyLock(backend, name), StudyLock(backend, name)
    assert holder.acquire()
    if backend.engine.dialect.name != "sqlite":  # SQLite's is one file lock per database
        other = StudyLock(backend, "another study")
        assert other.acquire()  # another study's lock is another lock
        other.release()
    got = threading.Event()

    def wait_for_lock() -> None:
        if waiter.acquire():
            got.set()
            waiter.release()

    thread = threading.Thread(target=wait_for_lock)
    thread.start()
    assert not got.wait(1.5)  # what is under test: kept out all that while
    holder.release()
    assert got.wait(10)
    thread.join()


def test_a_stop_ends_the_wait_within_one_slice(backend):
    # Within a second: the waiter tries the lock in slices of POLL_S and stops at the end of
    # the slice it is in. Counted in attempts, not in seconds, which a busy machine stretches.
    assert locking.POLL_S <= 0.5
    name = f"t-{uuid.uuid4().hex[:8]}"
    holder = StudyLock(backend, name)
    assert holder.acquire()
    stop = StopFlag()
    waiter = StudyLock(backend, name, stop)
    attempts = []
    take = {"sqlite": "_take_file", "postgresql": "_take_postgres"}.get(
        backend.engine.dialect.name, "_take_mysql")
    tried = getattr(waiter, take)

    def counted():
        attempts.append(None)
        return tried()

    setattr(waiter, take, counted)
    result = []
    thread = threading.Thread(target=lambda: result.append(waiter.acquire()))
    thread.start()
    wait_until(lambda: len(attempts) >= 2, 10, "the waiter to try the lock twice")
    stop.set()
    tried_before_the_stop = len(attempts)
    thread.join(10)  # generous: a hang, not a slow machine
    assert result == [False]
    assert len(attempts) <= tried_before_the_stop + 1  # at most the slice it was in
    holder.release()


def test_a_lock_held_too_long_is_one_clear_error_and_leaks_nothing(backend, monkeypatch):
    monkeypatch.setattr(locking, "LOCK_TIMEOUT_S", 1.2)
    name = f"t-{uuid.uuid4().hex[:8]}"
    holder = StudyLock(backend, name)
    assert holder.acquire()
    waiter = StudyLock(backend, name)
    with pytest.raises(LockTimeout) as raised:
        waiter.acquire()
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"waited 1 s for the study lock 'hpo:{name}': another worker")
    holder.release()
    # Every connection the waiting attempts took went back to the pool.
    assert backend.engine.pool.checkedout() == 0
    assert waiter.acquire()
    waiter.release()


def test_releasing_a_lock_whose_connection_died_raises_nothing(backend):
    # Found by the chaos benchmark: a commit on the dead connection raised, hiding the lost
    # connection (which the worker retries) behind an error it does not retry.
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    dialect = backend.engine.dialect.name
    if dialect == "sqlite":
        pytest.skip("a file lock has no connection to lose")
    name = f"t-{uuid.uuid4().hex[:8]}"
    lock = StudyLock(backend, name)
    assert lock.acquire()
    kill_on_server(lock.connection)
    with pytest.raises(DBAPIError):
        lock.connection.execute(text("SELECT 1"))  # the connection is gone
    lock.release()
    assert backend.engine.pool.checkedout() == 0
    assert StudyLock(backend, name).acquire()
