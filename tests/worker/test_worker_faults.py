"""Workers under faults: signals, frozen and dead workers, orphaned trials, lost databases.

Real `hpo run` processes started as the README says, on real databases.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.store.locking import StudyLock
from hpo.store.optuna_compat import rdb_backend
from hpo.store.storage import dispose, open_storage
from tests.conftest import HPO, sleepy_study, start_workers, trials, wait_all, wait_until

BEATS = "heartbeat: {interval: 1, grace: 2, max_retries: 2}\n"

# A signalled worker stops at once (0.47 s in the README's chaos runs; its waits poll the stop
# flag every 0.5 s at most). The bound leaves room for a loaded machine, yet a worker that
# missed the signal, or slept through it, takes far longer: the lock's 120 s, or the 30 s its
# launcher waits before it terminates its children.
STOP_S = 3.0

pytestmark = pytest.mark.slow


class Lines:
    """A worker's stderr, read line by line in a thread, so a test can wait for a line."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, args=(process.stderr,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, fragment: str, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(fragment in line for line in self.seen):
                return True
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                return any(fragment in line for line in self.seen)
            self.seen.append(line)
        return False

    def rest(self) -> str:
        self.wait_for("\0", timeout=10)  # drain until the stream ends
        return "".join(self.seen)


def running(url, name):
    return [t for t in trials(url, name) if t.state == TrialState.RUNNING]


def freeze_while_running(worker: subprocess.Popen, url, name, worker_id) -> int:
    """SIGSTOP `worker` while it holds a running trial; return that trial's number.

    Stop it first, then look: a trial seen running before the signal may have ended by the
    time the signal lands. If it was caught between trials, let it go on and try again.
    """
    def caught() -> list[int]:
        worker.send_signal(signal.SIGSTOP)  # alive, but silent: no heartbeat
        held = [t.number for t in running(url, name) if t.user_attrs.get("worker_id") == worker_id]
        if not held:
            worker.send_signal(signal.SIGCONT)
        return held

    return wait_until(caught, 60, f"worker {worker_id} caught holding a running trial",
                      interval=0.2)[0]


def stop(process: subprocess.Popen, signum: int) -> None:
    """Signal `process` and wait for it to end, for `STOP_S` at most."""
    process.send_signal(signum)
    try:
        process.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {STOP_S} s after {signal.Signals(signum).name}",
                    pytrace=False)


def waits_for_the_lock(worker: subprocess.Popen, lock: StudyLock) -> bool:
    """Whether `worker` handles signals (its handlers go in just before it opens the study,
    under the lock) and, on a server, waits for the study lock `lock` holds. A waiter on
    SQLite's file lock leaves no trace outside its process."""
    from sqlalchemy import text

    status = Path(f"/proc/{worker.pid}/status").read_text()
    caught = int(status.split("SigCgt:")[1].split()[0], 16)
    if not caught >> (signal.SIGTERM - 1) & 1:
        return False
    engine = lock._backend.engine
    if engine.dialect.name == "postgresql":
        query = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                 f"AND classid = 0 AND objid::bigint = {lock._key}")
    elif engine.dialect.name in ("mysql", "mariadb"):
        query = ("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                 f"WHERE INFO LIKE '%GET_LOCK(''{lock._name}''%'")
    else:
        return True
    with engine.connect() as c:
        return c.execute(text(query)).scalar() > 0


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_a_waiting_worker_stops_it_at_once(tmp_path, storage_url, signum, code):
    # The busy worker's trial outlasts any wait below, however loaded the machine: its end
    # must come from the SIGTERM.
    path, name = sleepy_study(tmp_path, n_trials=1, sleep=120, extra=BEATS)
    [busy] = start_workers(path, storage_url, 1)
    wait_until(lambda: running(storage_url, name), 60, "the busy worker's running trial")
    [waiter] = start_workers(path, storage_url, 1)
    lines = Lines(waiter)
    assert lines.wait_for("waiting for running trial 0 (")
    stop(waiter, signum)
    assert waiter.returncode == code
    stop(busy, signal.SIGTERM)  # interrupts the objective (its trial fails, below)
    assert busy.returncode == 143
    [trial] = trials(storage_url, name)
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == "interrupted by a signal"


def test_a_signal_to_a_worker_waiting_for_the_lock_stops_it_at_once(tmp_path, storage_url):
    path, name = sleepy_study(tmp_path, n_trials=2, sleep=0.0)
    storage = open_storage(storage_url)
    optuna.create_study(study_name=name, storage=storage)
    holder = StudyLock(rdb_backend(storage), name)
    assert holder.acquire()
    try:
        [waiter] = start_workers(path, storage_url, 1)
        wait_until(lambda: waits_for_the_lock(waiter, holder), 60,
                   "the worker to wait for the study lock")
        assert waiter.poll() is None
        stop(waiter, signal.SIGTERM)
        assert waiter.returncode == 143
        assert trials(storage_url, name) == []
    finally:
        holder.release()
        dispose(storage)


def test_an_orphaned_ask_without_heartbeat_does_not_hang_the_study(tmp_path, storage_url):
    path, name = sleepy_study(tmp_path, n_trials=3, sleep=0.0, extra=BEATS)
    assert wait_all(start_workers(path, storage_url, 1, extra=["--n-trials", "1"]))[0][0] == 0
    study = optuna.load_study(study_name=name, storage=storage_url)
    orphan = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})  # a notebook's
    [worker] = start_workers(path, storage_url, 1)
    code, _, err = wait_all([worker], timeout=60)[0]  # a hung study fails here
    assert code == 0, err
    said = f"waiting for running trial {orphan.number} (unknown worker)"
    assert err.count(said) == 1  # said once
    assert "Warning" not in err and "Traceback" not in err
    done = trials(storage_url, name)
    assert done[orphan.number].state == TrialState.FAIL
    assert "sent no heartbeat for over 2 s" in done[orphan.number].user_attrs["fail_reason"]
    [retry] = [t for t in done if t.user_attrs.get("retry_of") == orphan.number]
    assert retry.state == TrialState.COMPLETE and retry.params == done[orphan.number].params
    assert Counter(t.state for t in done)[TrialState.COMPLETE] == 3


def test_a_frozen_workers_reaped_trial_is_one_warning_and_the_worker_goes_on(tmp_path,
                                                                             storage_url):
    path, name = sleepy_study(tmp_path, n_trials=2, sleep=1.5, extra=BEATS)
    [frozen] = start_workers(path, storage_url, 1, label="frozen")
    stopped = freeze_while_running(frozen, storage_url, name, "frozen")
    try:
        [other] = start_workers(path, storage_url, 1)
        assert wait_all([other], timeout=60)[0][0] == 0
    finally:
        frozen.send_signal(signal.SIGCONT)
    code, _, err = wait_all([frozen], timeout=60)[0]
    assert code == 0, err
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if "was failed by another worker" in line]
    assert warnings == [f"hpo: trial {stopped} was failed by another worker while it ran (this "
                        "worker sent no heartbeat for 2 s); its result is dropped and its retry "
                        "runs it again"]
    counts = Counter(t.state for t in trials(storage_url, name))
    assert counts == {TrialState.COMPLETE: 2, TrialState.FAIL: 1}


def test_an_outage_longer_than_grace_loses_no_trial(tmp_path, postgres_proxy):
    url, proxy, proxied = postgres_proxy
    path, name = sleepy_study(tmp_path, n_trials=8, sleep=2.0,
                              extra="heartbeat: {interval: 1, grace: 3, max_retries: 2}\n")
    workers = start_workers(path, proxied, 2)
    wait_until(lambda: sum(t.state == TrialState.COMPLETE for t in trials(url, name)) >= 2, 60,
               "two completed trials")
    proxy.cut()
    # The outage's length is what is under test: more than twice the grace period, so that
    # every heartbeat is stale when the database comes back.
    time.sleep(7)
    proxy.restore()
    outputs = wait_all(workers, timeout=120)
    assert all(code == 0 for code, _, _ in outputs), outputs
    assert any("database unreachable" in err for _, _, err in outputs)
    done = trials(url, name)
    # Nothing was reaped. A trial whose own objective read the database during the outage
    # (this one reads the study's attrs) failed through no fault of its own, and ran again.
    failed = [t for t in done if t.state == TrialState.FAIL]
    assert all(t.user_attrs["fail_reason"].startswith("lost the database while it ran")
               for t in failed), [t.user_attrs for t in failed]
    for trial in failed:
        assert any(t.user_attrs.get("retry_of") == trial.number
                   and t.state == TrialState.COMPLETE for t in done)
    assert Counter(t.state for t in done)[TrialState.COMPLETE] == 8


def test_local_workers_launcher_stops_its_children_on_sigterm(tmp_path):
    path, name = sleepy_study(tmp_path, n_trials=20, sleep=5)
    url = f"sqlite:///{tmp_path / name}.db"
    launcher = subprocess.Popen([HPO, "run", str(path), "--workers", "2", "-q"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: len(running(url, name)) == 2, 60, "both workers' running trials")
    stop(launcher, signal.SIGTERM)
    assert launcher.returncode == 143
    states = Counter(t.state for t in trials(url, name))
    assert states == {TrialState.FAIL: 2}  # interrupted, none left RUNNING
    pids = {t.user_attrs["worker_pid"] for t in trials(url, name)}
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
