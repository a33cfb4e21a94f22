"""hpo's helper threads never take SIGINT or SIGTERM, so a signal always reaches the main
thread, where it interrupts the objective at once (not when its blocking call returns)."""

from __future__ import annotations

import re
import signal
import threading
from pathlib import Path

import pytest

from hpo.signals import EXIT_CODES, helper_thread

ROOT = Path(__file__).resolve().parent.parent


def _blocked(native_id: int) -> int:
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    return int(re.search(r"^SigBlk:\s*([0-9a-f]+)", status, re.M)[1], 16)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux's /proc")
def test_a_helper_thread_blocks_the_stop_signals_and_its_creator_does_not():
    started, finish = threading.Event(), threading.Event()
    thread = helper_thread(lambda: (started.set(), finish.wait(30)), name="probe")
    assert started.wait(30)
    try:
        helper, creator = _blocked(thread.native_id), _blocked(threading.get_native_id())
        for signum in EXIT_CODES:
            assert helper >> (signum - 1) & 1, signal.Signals(signum).name
            assert not creator >> (signum - 1) & 1, signal.Signals(signum).name
    finally:
        finish.set()
        thread.join(30)


def test_every_thread_hpo_starts_is_a_helper_thread():
    # The heartbeat and the recorder's flusher run beside every trial's objective.
    starts = [path.relative_to(ROOT).as_posix() for path in (ROOT / "hpo").rglob("*.py")
              if "threading.Thread(" in path.read_text()]
    assert starts == ["hpo/signals.py"]
