"""Do faster searches find models as good? The quickstart, `hpo run` as is against one worker.

`hpo run` starts one worker per usable CPU on the quickstart, so TPE proposes trials while
others are still running (the constant liar counts them as bad guesses). This runs the
quickstart (50 trials, TPE) with each sampler seed, as `hpo run` chooses and with
`--workers 1` (one trial at a time, as hpo ran it before), and compares the best validation
accuracy after 50 trials (median over seeds) and the wall time.

    python benchmarks/search_quality.py [--seeds 0 1 2] [--trials 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

QUICKSTART = Path(__file__).resolve().parent.parent / "studies" / "quickstart.yaml"


def best_after(folder: Path, seed: int, trials: int, extra: list[str]) -> tuple[float, float]:
    """(best value, seconds) of the quickstart with sampler seed `seed`, run anew."""
    for database in folder.glob("*.db"):
        database.unlink()
    study = folder / "quickstart.yaml"
    study.write_text(QUICKSTART.read_text().replace("seed: 0, n_startup_trials",
                                                    f"seed: {seed}, n_startup_trials"))
    env = {k: v for k, v in os.environ.items() if k != "HPO_STORAGE"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hpo", "run", str(study), "-q", "--n-trials",
                    str(trials), *extra], check=True, capture_output=True, env=env)
    seconds = time.perf_counter() - started
    loaded = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{folder}/"
                               "quickstart.db")
    return loaded.best_value, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args()
    runs = {"hpo run (its choice of workers)": [], "hpo run --workers 1": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for label, extra in zip(runs, ([], ["--workers", "1"]), strict=True):
                best, seconds = best_after(Path(tmp), seed, args.trials, extra)
                runs[label].append((best, seconds))
                print(f"seed {seed} {label}: best {best:.4f} in {seconds:.1f} s", flush=True)
    for label, results in runs.items():
        print(f"{label}: median best {statistics.median(b for b, _ in results):.4f}, "
              f"median {statistics.median(s for _, s in results):.1f} s")


if __name__ == "__main__":
    main()
