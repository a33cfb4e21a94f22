"""Which database errors are retried: real errors from the real servers, and real runs."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid

import pytest
import sqlalchemy
from sqlalchemy import create_engine, text

from hpo.errors import HpoError
from hpo.signals import StopFlag
from hpo.store.retry import RECONNECT_LIMIT_S, Retrying, connection_error
from tests.conftest import (
    assert_one_line,
    cli,
    kill_on_server,
    server_url,
    study_yaml,
    write_study,
)
from tests.proxy import CuttableProxy


def raised(engine, sql: str, connection=None) -> BaseException:
    try:
        if connection is not None:
            connection.execute(text(sql))
        else:
            with engine.connect() as c:
                c.execute(text(sql))
    except Exception as e:
        return e
    raise AssertionError(f"{sql!r} raised nothing")


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_killed_connection_is_retried_and_a_bad_statement_is_not(kind):
    url = server_url(kind)
    engine = create_engine(url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        victim = engine.connect()
        kill_on_server(victim)
        assert connection_error(raised(engine, "SELECT 1", victim)) is not None
        victim.close()
        assert connection_error(raised(engine, "SELEC 1")) is None
        assert connection_error(raised(engine, "SELECT * FROM no_such_table_here")) is None
        table = f"t_dup_{uuid.uuid4().hex[:8]}"
        with admin.connect() as c:
            c.execute(text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)"))
            c.execute(text(f"INSERT INTO {table} VALUES (1)"))
            duplicate = raised(admin, f"INSERT INTO {table} VALUES (1)", c)
            c.execute(text(f"DROP TABLE {table}"))
        assert isinstance(duplicate, sqlalchemy.exc.IntegrityError)
        assert connection_error(duplicate) is None
    finally:
        engine.dispose()
        admin.dispose()


def test_a_refused_connection_and_a_busy_sqlite_file_are_retried(tmp_path):
    refused = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/test",
                            connect_args={"connect_timeout": 2})
    assert connection_error(raised(refused, "SELECT 1")) is not None
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    busy = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    assert connection_error(raised(busy, "SELECT * FROM t")) is not None
    holder.rollback()


def test_other_errors_are_one_line_at_once_and_lost_connections_wait_a_bounded_time():
    url = server_url("postgresql")
    engine = create_engine(url)
    retrying = Retrying(url, limit_s=1.5)
    with pytest.raises(HpoError) as bad:
        retrying(lambda: engine.connect().execute(text("SELEC 1")), "counting trials")
    assert retrying.retries == 0  # at once: not one retry
    assert_one_line(str(bad.value), "database error on postgresql+psycopg://", [
        "while counting trials: (psycopg.errors.SyntaxError)"])
    proxy, proxied = CuttableProxy.in_front_of(url)
    proxy.cut()
    down = create_engine(proxied, connect_args={"connect_timeout": 2})
    started = time.monotonic()
    with pytest.raises(HpoError) as lost:
        retrying(lambda: down.connect().execute(text("SELECT 1")), "starting a trial")
    # The whole limit, and then not for ever (a generous bound: a hang, not a slow machine).
    assert 1.5 <= time.monotonic() - started < 30 and retrying.retries >= 1
    assert_one_line(str(lost.value), "lost the database ", [
        "for 2 s while starting a trial", "run `hpo run` again to resume"])
    # A stop (a signal) ends the waiting at once.
    stop = StopFlag()
    stopped = Retrying(proxied, stop, limit_s=60)
    at_stop: list[int] = []
    threading.Timer(0.3, lambda: (at_stop.append(stopped.retries), stop.set())).start()
    started = time.monotonic()
    with pytest.raises(sqlalchemy.exc.OperationalError):
        stopped(lambda: down.connect().execute(text("SELECT 1")), "starting a trial")
    # Counted, not timed: no retry starts after the stop but the one under way.
    assert stopped.retries <= at_stop[0] + 1
    assert time.monotonic() - started < 30  # and not the 60 s limit (a hang guard)
    proxy.close()
    engine.dispose()
    down.dispose()


def test_a_non_connection_database_error_in_a_run_is_one_line_at_once(tmp_path):
    # Every write refused by the server (a read-only transaction): no waiting it out.
    url = server_url("postgresql")
    name = f"t-ro-{uuid.uuid4().hex[:8]}"
    path = write_study(tmp_path, study_yaml(name, n_trials=3,
                                            space="x: {type: float, low: 0.0, high: 1.0}"))
    assert cli("run", path, "-q", "--n-trials", "1", "--storage", url).exit_code == 0
    read_only = url + "?options=-c%20default_transaction_read_only%3Don"
    started = time.monotonic()
    result = cli("run", path, "-q", "--storage", read_only)
    assert time.monotonic() - started < RECONNECT_LIMIT_S / 2  # not waited out: generous
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert_one_line(line, "Error: database error on postgresql+psycopg://", [
        "while starting a trial", "read-only transaction"])
    assert "Traceback" not in result.output
