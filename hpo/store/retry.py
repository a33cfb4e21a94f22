"""Which database errors are worth waiting out, and the bounded retry that waits them out.

Only a lost or refused connection, and the few server answers that mean "try again" (a
restarting server, a deadlock, SQLite's busy file), are retried: with backoff, for at most
`RECONNECT_LIMIT_S`. Any other database error (a constraint, a missing table, denied access)
says something is wrong that waiting will not fix, so it is one clear line at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import tenacity

from hpo.errors import HpoError
from hpo.signals import StopFlag
from hpo.store.storage import describe_error, mask_url

logger = logging.getLogger("hpo")
T = TypeVar("T")

# How long a worker keeps retrying an unreachable database before it gives up.
RECONNECT_LIMIT_S = 120.0
FIRST_DELAY_S, MAX_DELAY_S = 0.5, 5.0

# PostgreSQL SQLSTATEs: connection exceptions (class 08), the server shutting down or
# starting (57P01-57P03), a serialization failure or deadlock (40001, 40P01).
_PG_TRANSIENT_PREFIXES = ("08", "57P01", "57P02", "57P03", "40001", "40P01")
# MySQL/MariaDB error numbers: can't connect (2002, 2003), server gone or connection lost
# (2006, 2013, 2055), server shutdown (1053), connection killed (1927, MariaDB), lock wait
# timeout (1205), deadlock (1213).
_MYSQL_TRANSIENT = {2002, 2003, 2006, 2013, 2055, 1053, 1927, 1205, 1213}


def _causes(error: BaseException | None) -> list[BaseException]:
    """`error` and every exception behind it (Optuna sometimes hides the database's)."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        chain.append(error)
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return chain


def _is_transient(error: BaseException) -> bool:
    from sqlalchemy import exc

    if isinstance(error, exc.TimeoutError):  # no pooled connection came free in time
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated:  # SQLAlchemy's dialect saw the connection die
        return True
    driver = error.orig
    sqlstate = getattr(driver, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate.startswith(_PG_TRANSIENT_PREFIXES)
    if type(driver).__module__.startswith("psycopg"):
        # psycopg raises client-side failures (refused, closed by the server) without a state.
        return isinstance(error, (exc.OperationalError, exc.InterfaceError))
    if type(driver).__module__.startswith("pymysql"):
        code = driver.args[0] if driver.args and isinstance(driver.args[0], int) else None
        return code in _MYSQL_TRANSIENT or isinstance(error, exc.InterfaceError)
    if type(driver).__module__.startswith("sqlite3"):
        return "locked" in str(driver) or "busy" in str(driver)
    return isinstance(error, exc.OperationalError)


def connection_error(error: BaseException) -> BaseException | None:
    """The transient database error behind `error`, if that is what it is, else None."""
    from sqlalchemy import exc

    for cause in _causes(error):
        if isinstance(cause, exc.PendingRollbackError):
            continue  # a symptom: the error that invalidated the connection is further down
        if isinstance(cause, exc.SQLAlchemyError):
            return cause if _is_transient(cause) else None
    return None


def database_error(error: BaseException) -> BaseException | None:
    """Any database error behind `error` (transient or not), else None."""
    from sqlalchemy import exc

    return next((c for c in _causes(error) if isinstance(c, exc.SQLAlchemyError)), None)


class Retrying:
    """Runs a step, retrying it while the database is unreachable, for a bounded time.

    Setting `stop` (a signal arrived) ends the waiting at once; `on_lost` hears of each lost
    connection (the reaper restarts its clock).
    """

    def __init__(self, url: str, stop: StopFlag | None = None,
                 limit_s: float = RECONNECT_LIMIT_S,
                 on_lost: Callable[[], None] = lambda: None) -> None:
        self.url = url
        self.stop = stop or StopFlag()
        self.limit_s = limit_s
        self.on_lost = on_lost
        self.retries = 0

    def __call__(self, step: Callable[[], T], what: str) -> T:
        """Run `step` (`what` it does, for messages) until it succeeds or cannot."""

        def lost(state: tenacity.RetryCallState) -> None:
            self.retries += 1
            self.on_lost()
            error = connection_error(state.outcome.exception())
            logger.warning("database unreachable while %s (%s); retrying in %.1f s", what,
                           describe_error(error, self.url), state.next_action.sleep,
                           exc_info=error if logger.isEnabledFor(logging.DEBUG) else None)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: connection_error(e) is not None),
            wait=tenacity.wait_exponential(multiplier=FIRST_DELAY_S, min=FIRST_DELAY_S,
                                           max=MAX_DELAY_S),
            stop=tenacity.stop_after_delay(self.limit_s)
            | tenacity.stop_when_event_set(self.stop),
            sleep=self.stop.wait,
            before_sleep=lost,
            reraise=True,
        )
        try:
            return retrying(step)
        except Exception as raised:
            error = database_error(raised)
            if error is None or self.stop.is_set():
                raise
            if connection_error(raised) is not None:
                raise HpoError(
                    f"lost the database {mask_url(self.url)} for {self.limit_s:.0f} s while "
                    f"{what} ({describe_error(error, self.url)}); finished trials are stored, run "
                    "`hpo run` again to resume"
                ) from raised
            raise HpoError(
                f"database error on {mask_url(self.url)} while {what}: "
                f"{describe_error(error, self.url)}"
            ) from raised
