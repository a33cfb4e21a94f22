"""Chaos: N `hpo run` workers on PostgreSQL and on MySQL while everything goes wrong.

For each server: a clean run of the study, then the same study under chaos, side by side.
The workers reach the server through a loopback proxy that can cut every connection (a
network partition or a server restart, as a worker sees it), and are started exactly as the
README says (`HPO_STORAGE=... hpo run study.yaml`). During the chaos run:
- every few seconds a random worker is SIGKILLed and a replacement started;
- every hpo connection is killed on the server (pg_terminate_backend / KILL);
- the database is unreachable for twice the heartbeat grace while trials longer than the
  grace run (and, on PostgreSQL with `--restart`, the server itself is restarted);
- a notebook-style `study.ask()` leaves an orphaned RUNNING trial without a heartbeat;
- at the end a worker that waits for the last trials is sent SIGTERM.

It prints, per server: finished trials (must equal n_trials), RUNNING left (0), duplicate
points among finished trials (0), worker tracebacks (0), trials re-run after their worker
died, database retries the workers logged, how fast the waiting worker stopped, and the wall
time lost against the clean run.

    python benchmarks/chaos.py [--workers 8] [--trials 160] [--backends postgresql mysql]
        [--restart]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import optuna
from optuna.trial import TrialState
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.proxy import CuttableProxy  # noqa: E402

URLS = {
    "postgresql": os.environ.get("HPO_TEST_POSTGRES_URL",
                                 "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mysql": os.environ.get("HPO_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
GRACE_S = 4
STUDY = """
name: {name}
n_trials: {n}
sampler: {{type: random, seed: 0}}
heartbeat: {{interval: 1, grace: {grace}, max_retries: 5}}
objective: {{callable: "objective.py:objective"}}
search_space:
  x: {{type: float, low: 0.0, high: 1.0}}
"""
# 0.5 to 5.5 s a trial: many run longer than the grace period while the database is away.
OBJECTIVE = """
import time


def objective(trial):
    time.sleep(0.5 + 5.0 * trial.params["x"])
    return trial.params["x"]
"""


class Workers:
    """The worker processes of one run, each with its stderr in a file of its own."""

    def __init__(self, spec: Path, url: str, folder: Path) -> None:
        self.spec, self.url, self.folder = spec, url, folder
        self.all: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def start(self) -> subprocess.Popen:
        log = self.folder / f"worker-{len(self.logs)}.log"
        env = {**os.environ, "HPO_STORAGE": self.url}
        with log.open("w") as err:
            worker = subprocess.Popen([sys.executable, "-m", "hpo", "run", str(self.spec), "-q"],
                                      env=env, stdout=subprocess.DEVNULL, stderr=err)
        self.all.append(worker)
        self.logs.append(log)
        return worker

    def alive(self) -> list[subprocess.Popen]:
        return [w for w in self.all if w.poll() is None]

    def wait(self, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        for worker in self.all:
            try:
                worker.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        return [w.returncode for w in self.all]

    def text(self) -> str:
        return "".join(log.read_text() for log in self.logs)


def kill_connections(url: str) -> int:
    """Kill every connection to the database but this one; how many were killed."""
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        if engine.dialect.name == "postgresql":
            killed = c.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
        else:
            ids = c.execute(text(
                "SELECT id FROM information_schema.processlist "
                "WHERE db = DATABASE() AND id <> CONNECTION_ID()")).scalars().all()
            for connection_id in ids:
                try:
                    c.execute(text(f"KILL {int(connection_id)}"))
                except Exception:
                    pass  # it ended by itself meanwhile
            killed = len(ids)
    engine.dispose()
    return killed


def restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
                   check=True, capture_output=True, timeout=120)


def study_trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=url).trials
    except Exception:
        return []


def finished(url: str, name: str) -> int:
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               for t in study_trials(url, name))


def run(url: str, folder: Path, workers: int, n: int, chaos: bool, restart: bool
        ) -> dict[str, object]:
    """One run of a fresh study; with `chaos`, everything above goes wrong during it."""
    name = f"chaos-{uuid.uuid4().hex[:8]}"
    spec = folder / f"{name}.yaml"
    spec.write_text(STUDY.format(name=name, n=n, grace=GRACE_S))
    proxy, proxied = CuttableProxy.in_front_of(url)
    pool = Workers(spec, proxied, folder)
    events: list[str] = []
    stop_chaos = threading.Event()
    waiting_stop: dict[str, object] = {}
    started = time.monotonic()
    for _ in range(workers):
        pool.start()

    def chaos_thread() -> None:
        rng = random.Random(0)
        at = {"orphan": 8.0, "kill_connections": 15.0, "outage": 25.0, "restart": 45.0}
        next_kill = 4.0
        while not stop_chaos.wait(0.2):
            elapsed = time.monotonic() - started
            if finished(url, name) >= n - workers:
                break  # the end: only the waiting worker's test is left
            if elapsed >= next_kill and elapsed < 60:
                victims = pool.alive()
                if victims:
                    rng.choice(victims).send_signal(signal.SIGKILL)
                    pool.start()
                    events.append("sigkill")
                next_kill += 4.0
            if "orphan" in at and elapsed >= at["orphan"]:
                del at["orphan"]
                study = optuna.load_study(study_name=name, storage=url)
                study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
                events.append("orphaned ask")
            if "kill_connections" in at and elapsed >= at["kill_connections"]:
                del at["kill_connections"]
                events.append(f"killed {kill_connections(url)} connections")
            if "outage" in at and elapsed >= at["outage"]:
                del at["outage"]
                proxy.cut()
                time.sleep(2 * GRACE_S)
                proxy.restore()
                events.append(f"database unreachable for {2 * GRACE_S} s")
            if "restart" in at and elapsed >= at["restart"]:
                del at["restart"]
                if restart and url.startswith("postgresql") and shutil.which("pg_ctlcluster"):
                    restart_postgres()
                    events.append("PostgreSQL restarted")

    def sigterm_a_waiting_worker() -> None:
        while finished(url, name) < n - workers and not stop_chaos.is_set():
            time.sleep(0.2)
        waiter = pool.start()
        log = pool.logs[-1]
        deadline = time.monotonic() + 30
        while "waiting for running trial" not in log.read_text():
            if time.monotonic() > deadline or waiter.poll() is not None:
                waiting_stop["stopped_in_s"] = None
                return
            time.sleep(0.05)
        sent = time.monotonic()
        waiter.send_signal(signal.SIGTERM)
        waiter.wait(timeout=30)
        waiting_stop["stopped_in_s"] = time.monotonic() - sent
        waiting_stop["exit_code"] = waiter.returncode

    threads = []
    if chaos:
        threads = [threading.Thread(target=chaos_thread, daemon=True),
                   threading.Thread(target=sigterm_a_waiting_worker, daemon=True)]
        for thread in threads:
            thread.start()
    codes = pool.wait(timeout=600)
    stop_chaos.set()
    for thread in threads:
        thread.join(timeout=60)
    seconds = time.monotonic() - started
    proxy.close()

    trials = study_trials(url, name)
    counts = Counter(t.state for t in trials)
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    points = Counter(t.params["x"] for t in done)
    logs = pool.text()
    optuna.delete_study(study_name=name, storage=url)
    # A worker that cannot reach the database when it starts stops at once, by design (a
    # wrong URL is reported at once; an engine restarts it): a replacement started while the
    # server restarts does. Any other exit but 0, 143 and SIGKILL is wrong.
    ends = [(code, (log.read_text().strip().splitlines() or [""])[-1])
            for code, log in zip(codes, pool.logs, strict=True)
            if code not in (0, 143, -signal.SIGKILL)]
    refused = [line for code, line in ends if code == 1 and "cannot open storage" in line]
    bad = [f"exit {code}: {line}" for code, line in ends if line not in refused]
    return {
        "seconds": seconds,
        "finished": len(done),
        "running": counts[TrialState.RUNNING],
        "failed": counts[TrialState.FAIL],
        "duplicates": sum(k - 1 for k in points.values()),
        "tracebacks": logs.count("Traceback"),
        "reruns": sum("retry_of" in t.user_attrs for t in done),
        "db_retries": logs.count("database unreachable"),
        "bad_exits": len(bad),
        "bad_exit_lines": bad,
        "refused_at_start": len(refused),
        "events": Counter(events),
        **waiting_stop,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--trials", type=int, default=160)
    parser.add_argument("--backends", nargs="+", default=["postgresql", "mysql"])
    parser.add_argument("--restart", action="store_true",
                        help="also restart the PostgreSQL server (pg_ctlcluster) mid-run")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="hpo-chaos-"))
    (folder / "objective.py").write_text(OBJECTIVE)
    print(f"{args.workers} workers, n_trials {args.trials}, trials of 0.5-5.5 s, "
          f"heartbeat grace {GRACE_S} s")
    for backend in args.backends:
        url = URLS[backend]
        clean = run(url, folder, args.workers, args.trials, chaos=False, restart=False)
        mad = run(url, folder, args.workers, args.trials, chaos=True, restart=args.restart)
        lost = mad["seconds"] - clean["seconds"]
        print(f"\n{backend}: clean run {clean['seconds']:.1f} s; chaos run "
              f"{mad['seconds']:.1f} s; wall time lost {lost:.1f} s "
              f"({lost / clean['seconds']:.0%})")
        print(f"  chaos: {dict(mad['events'])}")
        for key, must in (("finished", args.trials), ("running", 0), ("duplicates", 0),
                          ("tracebacks", 0), ("bad_exits", 0)):
            verdict = "ok" if mad[key] == must else f"WRONG (must be {must})"
            print(f"  {key:<11} {mad[key]:>5}   {verdict}")
        for line in mad["bad_exit_lines"]:
            print(f"    {line}")
        print(f"  {'reruns':<11} {mad['reruns']:>5}   trials re-run after their worker died")
        print(f"  {'failed':<11} {mad['failed']:>5}   killed workers' trials (and the orphan)")
        print(f"  {'db_retries':<11} {mad['db_retries']:>5}   retries the workers logged")
        print(f"  {'refused':<11} {mad['refused_at_start']:>5}   replacements started while "
              "the server was away, stopped at once")
        stopped = mad.get("stopped_in_s")
        print("  waiting worker sent SIGTERM: " + (
            f"exit {mad['exit_code']} after {stopped:.2f} s" if stopped is not None
            else "never reached the wait"))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
