"""Bookkeeping cost per trial: `hpo run` against a plain Optuna script, both on SQLite.

A no-op objective with 5 parameters and 10 reports, 300 trials, TPE. Each measurement is a
whole process on a fresh SQLite file: `hpo run study.yaml -q` against a plain script calling
`optuna.create_study(storage="sqlite:///...")` and `study.optimize` with default settings.
The two alternate, and the medians are compared.

    python benchmarks/bookkeeping.py [--trials 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OBJECTIVE = '''
def objective(trial):
    total = sum(trial.params.values())
    for step in range(10):
        trial.report(1.0 / (step + 1), step)
    return total
'''

STUDY = """
name: bookkeeping
direction: minimize
n_trials: {trials}
sampler: {{type: tpe, seed: 0}}
objective: {{callable: "noop.py:objective"}}
search_space:
{space}
"""

PLAIN = '''
import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)


def objective(trial):
    total = sum(trial.suggest_float(f"x{{i}}", -1.0, 1.0) for i in range(5))
    for step in range(10):
        trial.report(1.0 / (step + 1), step)
    return total


study = optuna.create_study(storage="sqlite:///{db}", study_name="bookkeeping")
study.optimize(objective, n_trials={trials})
'''


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure_hpo(folder: Path, trials: int) -> float:
    work = folder / "hpo"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    space = "\n".join(f"  x{i}: {{type: float, low: -1.0, high: 1.0}}" for i in range(5))
    (work / "noop.py").write_text(OBJECTIVE)
    (work / "study.yaml").write_text(STUDY.format(trials=trials, space=space))
    hpo = [sys.executable, "-m", "hpo", "run", "study.yaml", "-q"]
    return timed(hpo, work)


def measure_plain(folder: Path, trials: int) -> float:
    work = folder / "plain"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    script = work / "plain.py"
    script.write_text(PLAIN.format(db=work / "plain.db", trials=trials))
    return timed([sys.executable, str(script)], work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    hpo_times, plain_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for round_number in range(args.rounds):
            hpo_times.append(measure_hpo(folder, args.trials))
            plain_times.append(measure_plain(folder, args.trials))
            print(f"round {round_number + 1}: hpo {hpo_times[-1]:.2f} s, "
                  f"plain optuna {plain_times[-1]:.2f} s", flush=True)
    hpo_ms = statistics.median(hpo_times) / args.trials * 1000
    plain_ms = statistics.median(plain_times) / args.trials * 1000
    print(f"hpo run:      {hpo_ms:6.1f} ms/trial (whole process, median of {args.rounds})")
    print(f"plain optuna: {plain_ms:6.1f} ms/trial (whole process, median of {args.rounds})")
    print(f"ratio hpo/plain: {hpo_ms / plain_ms:.2f} (goal <= 0.60)")


if __name__ == "__main__":
    main()
