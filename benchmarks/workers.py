"""Scaling of worker processes on PostgreSQL: hpo against plain Optuna with MaxTrialsCallback.

A fixed 0.2 s objective; 1, 2, 4, 8 and 16 worker processes, 10 trials per worker. Starting
a process takes seconds of CPU on a small machine, so every worker's first trial waits at a
barrier until all are up, and throughput is measured from then: trials/s, efficiency against
ideal scaling (N workers x 5 trials/s), and overshoot (finished trials beyond n_trials). The
baseline is plain Optuna processes sharing a study with
`MaxTrialsCallback(n_trials, states=(COMPLETE,))`. Last, the CPU one trial costs (worker and
PostgreSQL together) and the efficiency this machine's cores allow at each worker count, when
all workers share them.

Then real training on the CPU: trials per hour of the digits trainer with one worker (torch's
default threads, and one thread) against `--workers 2` (forked after the launcher's startup),
while training and for the whole command.

    python benchmarks/workers.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
        [--sleep 0.2] [--workers 1 2 4 8 16] [--train-trials 64] [--train-only]
        [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import optuna
from optuna.trial import TrialState

SLEEP_S = 0.2
TRIALS_PER_WORKER = 10

OBJECTIVE = '''
import os
import time
from pathlib import Path

READY = Path(os.environ["BENCH_READY"])
waited = False


def objective(trial):
    # A barrier: each worker's first trial waits until every worker is up, so process
    # start-up (seconds of CPU each on a small machine) never overlaps the measured run.
    global waited
    if not waited:
        (READY / str(os.getpid())).touch()
        while len(os.listdir(READY)) < int(os.environ["BENCH_WORKERS"]):
            time.sleep(0.01)
        waited = True
    time.sleep(float(os.environ["BENCH_SLEEP"]))
    return trial.params["x"]
'''

PLAIN = '''
import sys
import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
sys.path.insert(0, {folder!r})
from objective import objective as inner

optuna.logging.set_verbosity(optuna.logging.ERROR)


def objective(trial):
    trial.suggest_float("x", 0.0, 1.0)
    return inner(trial)


study = optuna.create_study(study_name={name!r}, storage={url!r}, load_if_exists=True)
study.optimize(objective, callbacks=[MaxTrialsCallback({n}, states=(TrialState.COMPLETE,))])
'''

STUDY = """
name: {name}
n_trials: {n}
sampler: {{type: random, seed: 0}}
pruner: {{divergence: false}}
objective: {{callable: "objective.py:objective"}}
search_space:
  x: {{type: float, low: 0.0, high: 1.0}}
"""


def measure(url: str, name: str, n: int, start_at: float) -> tuple[float, int]:
    """(trials/s from the common start, finished trials beyond n)."""
    trials = optuna.load_study(study_name=name, storage=url).trials
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    end = max(t.datetime_complete.timestamp() for t in done)
    return len(done) / (end - start_at), len(done) - n


def run_workers(commands: list[list[str]], folder: Path, sleep: float) -> float:
    """Run the workers to the end; the time the last of them was ready to start."""
    ready = Path(tempfile.mkdtemp(dir=folder))
    env = {**os.environ, "BENCH_READY": str(ready), "BENCH_WORKERS": str(len(commands)),
           "BENCH_SLEEP": str(sleep)}
    env.pop("HPO_STORAGE", None)
    workers = [subprocess.Popen(c, cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for c in commands]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        if worker.returncode != 0:
            sys.exit(f"a worker failed: {err[-2000:]}")
    return max(marker.stat().st_mtime for marker in ready.iterdir())


def run_study(kind: str, url: str, folder: Path, workers: int, n: int,
              sleep: float) -> tuple[float, int]:
    """Run an `n`-trial study with `workers` hpo or plain Optuna processes; measure() it."""
    name = f"bench-{kind}-{workers}-{uuid.uuid4().hex[:8]}"
    if kind == "hpo":
        spec = folder / f"{name}.yaml"
        spec.write_text(STUDY.format(name=name, n=n))
        commands = [[sys.executable, "-m", "hpo", "run", str(spec), "-q", "--storage", url,
                     "--worker-id", str(i)] for i in range(workers)]
    else:
        script = folder / f"{name}.py"
        script.write_text(PLAIN.format(folder=str(folder), name=name, url=url, n=n))
        commands = [[sys.executable, str(script)]] * workers
    start_at = run_workers(commands, folder, sleep)
    try:
        return measure(url, name, n, start_at)
    finally:
        optuna.delete_study(study_name=name, storage=url)


def busy_cpu_seconds() -> float:
    """CPU seconds this machine has spent busy since boot, every process (the database too)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_per_trial(kind: str, url: str, folder: Path) -> float:
    """Seconds of CPU, worker and database server together, one trial of a 0 s objective costs:
    the difference between a 220- and a 20-trial run, so start-up cancels out."""
    spent = []
    for n in (20, 220):
        before = busy_cpu_seconds()
        run_study(kind, url, folder, 1, n, 0.0)
        spent.append(busy_cpu_seconds() - before)
    return (spent[1] - spent[0]) / 200


def scaling(url: str, folder: Path, counts: list[int], sleep: float) -> None:
    (folder / "objective.py").write_text(OBJECTIVE)
    print(f"{sleep} s objective, {TRIALS_PER_WORKER} trials per worker, PostgreSQL")
    print(f"{'workers':>7} {'hpo trials/s':>12} {'eff.':>5} {'over':>4}   "
          f"{'optuna trials/s':>15} {'eff.':>5} {'over':>4}")
    for workers in counts:
        n = TRIALS_PER_WORKER * workers
        ideal = workers / sleep
        results = []
        for kind in ("hpo", "optuna"):
            rate, over = run_study(kind, url, folder, workers, n, sleep)
            results.append((rate, rate / ideal, over))
        (h_rate, h_eff, h_over), (o_rate, o_eff, o_over) = results
        print(f"{workers:7d} {h_rate:12.2f} {h_eff:5.2f} {h_over:4d}   "
              f"{o_rate:15.2f} {o_eff:5.2f} {o_over:4d}", flush=True)
    if not Path("/proc/stat").exists():
        return
    # All workers share this machine's cores here, unlike workers on machines of their own:
    # past some count the machine, not the lock or the database, is the limit.
    cores = os.cpu_count() or 1
    for kind in ("hpo", "optuna"):
        cost = cpu_per_trial(kind, url, folder)
        ceilings = ", ".join(
            f"{min(1.0, cores / (w / sleep * cost)):.2f} with {w}" for w in counts
        )
        print(f"{kind:>6}: {cost * 1000:.1f} ms of CPU a trial (worker + PostgreSQL); "
              f"{cores} cores allow an efficiency of at most {ceilings} workers", flush=True)


def steady_rate(trials: list[optuna.trial.FrozenTrial]) -> float:
    """Trials per hour while every worker was training: from the last worker's first start to
    the first worker's last finish, so start-up (a worker importing torch while another already
    trains) and the lone last trial are left out. A trial half inside counts half."""
    by_worker: dict[str, list] = {}
    for t in trials:
        by_worker.setdefault(t.user_attrs["worker_pid"], []).append(t)
    begin = max(min(t.datetime_start for t in ts) for ts in by_worker.values())
    end = min(max(t.datetime_complete for t in ts) for ts in by_worker.values())
    inside = sum(
        max(0.0, (min(t.datetime_complete, end) - max(t.datetime_start, begin)).total_seconds())
        / (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
    )
    return inside / (end - begin).total_seconds() * 3600


def train_rates(folder: Path, name: str, trials: int, workers: int,
                threads: int | None, device: str = "cpu") -> tuple[float, float]:
    """(steady trials/hour, trials/hour of the whole `hpo run` command) on the digits trainer."""
    spec = folder / f"{name}.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: {name}
        direction: maximize
        metric: val_accuracy
        n_trials: {trials}
        sampler: {{type: random, seed: 0}}
        objective:
          trainer: mlp
          data: {{dataset: digits}}
          model: {{hidden: [128, 128], batch_norm: true}}
          train: {{epochs: 10, threads: {threads or "null"}, device: {device}}}
        search_space:
          lr: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true}}
          batch_size: {{type: categorical, choices: [32, 64]}}
    """))
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hpo", "run", str(spec), "-q", "--workers",
                    str(workers)], check=True, stdout=subprocess.DEVNULL,
                   env={k: v for k, v in os.environ.items() if k != "HPO_STORAGE"})
    wall = time.perf_counter() - began
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / name}.db")
    done = study.get_trials(states=(TrialState.COMPLETE,))
    return steady_rate(done), len(done) / wall * 3600


def real_training(folder: Path, trials: int, device: str) -> None:
    print(f"\ndigits trainer on {device}, {trials} trials, SQLite; trials/hour while training "
          "and for the whole command (start-up included)")
    runs = {"1 worker, torch's threads = cores": (1, None),
            "1 worker, 1 thread": (1, 1),
            "2 workers (1 thread each)": (2, None)}
    rates = {}
    for i, (label, (workers, threads)) in enumerate(runs.items()):
        rates[label] = train_rates(folder, f"bench-train-{i}", trials, workers, threads,
                                   device)
        print(f"{label:>34}: {rates[label][0]:8,.0f} training {rates[label][1]:8,.0f} whole",
              flush=True)
    (two, two_whole), *_ = [rates[label] for label in runs if label.startswith("2")]
    one, one_whole = max((rates[label] for label in runs if label.startswith("1")),
                         key=lambda rate: rate[0])
    print(f"2 workers / the faster single worker: {two / one:.2f}x training "
          f"(goal >= 1.8x on 2 cores); {two_whole / one_whole:.2f}x for the whole command")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get(
        "HPO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--sleep", type=float, default=SLEEP_S, help="the objective's seconds")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--train-trials", type=int, default=64,
                        help="trials for the local-workers comparison; 0 skips it")
    parser.add_argument("--device", default="cpu",
                        help="the trainer's device; cuda: workers sharing one GPU")
    parser.add_argument("--train-only", action="store_true",
                        help="only the local-workers comparison on the trainer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.train_only:
            scaling(args.url, Path(tmp), args.workers, args.sleep)
        if args.train_trials:
            real_training(Path(tmp), args.train_trials, args.device)


if __name__ == "__main__":
    main()
