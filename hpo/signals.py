"""SIGINT / SIGTERM: stop a worker within a second, leaving no trial RUNNING.

Outside the objective a signal only sets `stop`, an Event that every wait of the worker
(the study lock, the wait for others' trials, the backoff of a retry) waits on, so it ends
at once; storage writes in progress finish, so a trial is never left half-written. Inside
the objective, which may be anyone's code, the signal raises KeyboardInterrupt and the trial
is recorded FAIL.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopSignals:
    """Catches SIGINT and SIGTERM while installed; `received` says which came first."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self.stop = threading.Event()
        self._in_objective = False

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)
        self.stop.set()
        if self._in_objective:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # only the main thread may handle signals (e.g. hpo.run in a thread)
            return
        previous = {s: signal.signal(s, self._handle) for s in EXIT_CODES}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    @contextmanager
    def objective_running(self) -> Iterator[None]:
        """While the objective runs a signal interrupts it; one that came before stops it here."""
        if self.stop.is_set():
            raise KeyboardInterrupt
        self._in_objective = True
        try:
            yield
        finally:
            self._in_objective = False

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.received] if self.received is not None else 0
