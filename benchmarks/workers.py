"""Scaling of worker processes on PostgreSQL: hpo against plain Optuna with MaxTrialsCallback.

A fixed 0.2 s objective; 1, 2, 4, 8 and 16 worker processes, 10 trials per worker. Process
start-up on this 2-core machine is staggered (each loads Python and Optuna), so every worker's
first trial waits for a common start time and throughput is measured from it: trials/s,
efficiency against ideal scaling (N workers x 5 trials/s), and overshoot (finished trials
beyond n_trials). The baseline is plain Optuna processes sharing a study with
`MaxTrialsCallback(n_trials, states=(COMPLETE,))`.

Then real training on the CPU: trials per hour of the digits trainer with `--workers 1` against
`--workers 2` (torch's threads split between them).

    python benchmarks/workers.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
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


def objective(trial):
    start_at = float(os.environ["BENCH_START_AT"])
    if time.time() < start_at:
        time.sleep(start_at - time.time())
    time.sleep({sleep})
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


def run_workers(commands: list[list[str]], folder: Path, start_at: float) -> None:
    env = {**os.environ, "BENCH_START_AT": str(start_at)}
    env.pop("HPO_STORAGE", None)
    workers = [subprocess.Popen(c, cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for c in commands]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        if worker.returncode != 0:
            sys.exit(f"a worker failed: {err[-2000:]}")


def scaling(url: str, folder: Path) -> None:
    (folder / "objective.py").write_text(OBJECTIVE.format(sleep=SLEEP_S))
    print(f"{SLEEP_S} s objective, {TRIALS_PER_WORKER} trials per worker, PostgreSQL")
    print(f"{'workers':>7} {'hpo trials/s':>12} {'eff.':>5} {'over':>4}   "
          f"{'optuna trials/s':>15} {'eff.':>5} {'over':>4}")
    for workers in (1, 2, 4, 8, 16):
        n = TRIALS_PER_WORKER * workers
        ideal = workers / SLEEP_S
        results = []
        for kind in ("hpo", "optuna"):
            name = f"bench-{kind}-{workers}-{uuid.uuid4().hex[:8]}"
            start_at = time.time() + 2.0 + 0.6 * workers  # room for every process to start
            if kind == "hpo":
                spec = folder / f"{name}.yaml"
                spec.write_text(STUDY.format(name=name, n=n))
                commands = [[sys.executable, "-m", "hpo", "run", str(spec), "-q", "--storage",
                             url, "--worker-id", str(i)] for i in range(workers)]
            else:
                script = folder / f"{name}.py"
                script.write_text(PLAIN.format(folder=str(folder), name=name, url=url, n=n))
                commands = [[sys.executable, str(script)]] * workers
            run_workers(commands, folder, start_at)
            rate, over = measure(url, name, n, start_at)
            results.append((rate, rate / ideal, over))
            optuna.delete_study(study_name=name, storage=url)
        (h_rate, h_eff, h_over), (o_rate, o_eff, o_over) = results
        print(f"{workers:7d} {h_rate:12.2f} {h_eff:5.2f} {h_over:4d}   "
              f"{o_rate:15.2f} {o_eff:5.2f} {o_over:4d}", flush=True)


def real_training(folder: Path, trials: int) -> None:
    rates = {}
    for workers in (1, 2):
        name = f"bench-train-{workers}"
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
              train: {{epochs: 10}}
            search_space:
              lr: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true}}
              batch_size: {{type: categorical, choices: [32, 64]}}
        """))
        subprocess.run([sys.executable, "-m", "hpo", "run", str(spec), "-q", "--workers",
                        str(workers)], check=True, stdout=subprocess.DEVNULL,
                       env={k: v for k, v in os.environ.items() if k != "HPO_STORAGE"})
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / name}.db")
        done = study.get_trials(states=(TrialState.COMPLETE,))
        span = (max(t.datetime_complete for t in done)
                - min(t.datetime_start for t in done)).total_seconds()
        rates[workers] = len(done) / span * 3600
        print(f"{workers} local worker(s): {rates[workers]:,.0f} digits trials per hour",
              flush=True)
    print(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}x (goal >= 1.8x on 2 cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get(
        "HPO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--train-trials", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scaling(args.url, Path(tmp))
        real_training(Path(tmp), args.train_trials)


if __name__ == "__main__":
    main()
