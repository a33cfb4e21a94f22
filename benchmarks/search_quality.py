"""Do faster searches find models as good? The quickstart with K trials pending against one.

`hpo run` starts one worker per usable CPU on the quickstart, and each worker trains
`train.pack` trials at once, so TPE proposes trials while others are still running (the
constant liar counts them as bad guesses). This runs the quickstart (50 trials, TPE) with
each sampler seed: with `--workers 1` and `pack: 1` (one trial at a time, as hpo ran it
first), then as `hpo run` chooses its workers with each `pack` given; it compares the best
validation accuracy after 50 trials (median over seeds), the wall time of the whole command
and the trials per hour.

    python benchmarks/search_quality.py [--seeds 0 1 2] [--trials 50] [--packs 1 4]
        [--batch-size 32]   (the batch size fixed, out of the space)
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


def best_after(folder: Path, seed: int, trials: int, pack: int, extra: list[str],
               batch_size: int | None = None) -> tuple[float, float]:
    """(best value, seconds) of the quickstart with sampler seed `seed`, run anew."""
    for database in folder.glob("*.db"):
        database.unlink()
    study = folder / "quickstart.yaml"
    text = QUICKSTART.read_text().replace("seed: 0, n_startup_trials",
                                          f"seed: {seed}, n_startup_trials")
    fixed = f", batch_size: {batch_size}" if batch_size else ""
    text = text.replace("lr_decay: 0.95, seed: 0}",
                        f"lr_decay: 0.95, seed: 0, pack: {pack}{fixed}}}")
    if batch_size:  # the batch size fixed, out of the search space
        text = "\n".join(line for line in text.splitlines()
                         if not line.startswith("  batch_size:"))
    study.write_text(text)
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
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--batch-size", type=int, help="fix the batch size, not searched")
    args = parser.parse_args()
    settings = {"--workers 1, pack 1": (1, ["--workers", "1"])}
    settings.update({f"its workers, pack {k}": (k, []) for k in args.packs})
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for label, (pack, extra) in settings.items():
                best, seconds = best_after(Path(tmp), seed, args.trials, pack, extra,
                                           args.batch_size)
                runs[label].append((best, seconds))
                print(f"seed {seed} {label}: best {best:.4f} in {seconds:.1f} s", flush=True)
    base = statistics.median(s for _, s in runs["--workers 1, pack 1"])
    for label, results in runs.items():
        seconds = statistics.median(s for _, s in results)
        print(f"{label}: median best {statistics.median(b for b, _ in results):.4f}, "
              f"median {seconds:.1f} s, {3600 * args.trials / seconds:.0f} trials/hour "
              f"({base / seconds:.2f}x one worker, one trial at a time)")


if __name__ == "__main__":
    main()
