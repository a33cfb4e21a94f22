"""SIGINT / SIGTERM: stop a worker within a second, leaving no trial RUNNING.

Outside the objective a signal only sets `stop`, a flag that every wait of the worker (the
study lock, the wait for others' trials, the backoff of a retry) waits on, so it ends at
once; storage writes in progress finish, so a trial is never left half-written. Inside the
objective, which may be anyone's code, the signal raises KeyboardInterrupt and the trial is
recorded FAIL. hpo's own helper threads never take these signals (`helper_thread`), so the
kernel always hands them to the main thread, where Python runs the handler.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
WAIT_SLICE_S = 0.05


def helper_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """A started daemon thread that blocks SIGINT and SIGTERM.

    The kernel hands a process's signal to any one of its threads that does not block it.
    Python runs the handler in the main thread, but only at its next bytecode: a signal taken
    by a helper thread leaves the main thread's blocking call (an objective's `time.sleep(60)`,
    a long C kernel) running to its end before the worker hears of it. The thread inherits the
    mask it is started under, so it never holds the signals even for an instant.
    """
    thread = threading.Thread(target=target, daemon=True, name=name)
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX: nothing to choose between
        thread.start()
        return thread
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(EXIT_CODES))
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return thread


class StopFlag:
    """Like threading.Event for `is_set` and `wait`, but safe to set in a signal handler.

    A handler runs between two bytecodes of the main thread, possibly while that thread holds
    an Event's internal lock (inside `Event.wait`): `Event.set` there would wait for that lock
    for ever. Setting a plain attribute takes no lock; `wait` sleeps in short slices instead.
    """

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep until set or `timeout` seconds pass; whether it is set."""
        deadline = time.monotonic() + timeout
        while not self._set:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(WAIT_SLICE_S, left))
        return self._set


class StopSignals:
    """Catches SIGINT and SIGTERM while installed; `received` says which came first."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self.stop = StopFlag()
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
