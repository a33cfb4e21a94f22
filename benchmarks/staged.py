"""Staged (lr first, then all, then fine) against a flat TPE study at the same training epochs.

    python benchmarks/staged.py [--seeds 5] [--datasets digits,wine,breast_cancer,synthetic]

For each dataset and seed, one process runs both side by side on fresh SQLite files:
- flat: TPE over the whole space, FLAT_TRIALS trials of FULL_EPOCHS epochs;
- staged: `studies/digits-staged.yaml`'s stages (lr alone at 4 epochs, everything at 8,
  everything refined at 20) on the same dataset and seed.
Both spend about the same training epochs (printed). It prints, per dataset, the median best
validation accuracy, and the median wall time until a run first reached the target accuracy
(the lower of the two methods' median best, so that half the runs of each reach it; a run
that never does counts as infinitely slow) with how many runs reached it, and the
staged/flat ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hpo import runner  # noqa: E402
from hpo.spec import parse_spec  # noqa: E402
from hpo.wisdom.stages import run_staged  # noqa: E402

FULL_EPOCHS = 20
STAGED = yaml.safe_load((ROOT / "studies" / "digits-staged.yaml").read_text())
STAGE_EPOCHS = [s.get("train", {}).get("epochs", FULL_EPOCHS) * s["n_trials"]
                for s in STAGED["stages"]]
FLAT_TRIALS = round(sum(STAGE_EPOCHS) / FULL_EPOCHS)
DATA = {
    "digits": {"dataset": "digits"},
    "wine": {"dataset": "wine"},
    "breast_cancer": {"dataset": "breast_cancer"},
    "synthetic": {"dataset": "synthetic", "n_samples": 2000, "n_features": 20, "n_classes": 4},
}


def _spec(folder: Path, dataset: str, seed: int, staged: bool):
    data = yaml.safe_load(yaml.safe_dump(STAGED))
    data["name"] = f"{dataset}-{seed}-{'staged' if staged else 'flat'}"
    data["sampler"]["seed"] = seed
    data["objective"]["data"] = {**DATA[dataset], "normalize": "standard", "seed": seed}
    data["objective"]["train"]["seed"] = seed
    if not staged:
        del data["stages"]
        data["n_trials"] = FLAT_TRIALS
    return parse_spec(data, folder / f"{data['name']}.yaml")


def _trials(studies) -> list:
    trials = [t for s in studies for t in s.get_trials(deepcopy=False)]
    return sorted(trials, key=lambda t: t.datetime_start)


def _one(folder: Path, dataset: str, seed: int, staged: bool) -> dict:
    spec = _spec(folder, dataset, seed, staged)
    options = runner.RunOptions(quiet=True, write_note=False)
    started = time.perf_counter()
    if staged:
        studies = [r.result.study for r in run_staged(spec, options)]
    else:
        studies = [runner.run(spec, options).study]
    wall = time.perf_counter() - started
    trials = _trials(studies)
    start = trials[0].datetime_start
    curve = []  # (seconds since start, best so far)
    best = 0.0
    for t in sorted((t for t in trials if t.value is not None),
                    key=lambda t: t.datetime_complete):
        best = max(best, t.value)
        curve.append(((t.datetime_complete - start).total_seconds(), best))
    epochs = sum(t.user_attrs.get("epochs_run", 0) for t in trials)
    return {"best": best, "curve": curve, "wall": wall, "epochs": epochs}


def _time_to(curve: list, target: float) -> float:
    return next((s for s, best in curve if best >= target), float("inf"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--datasets", default=",".join(DATA))
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"flat: {FLAT_TRIALS} trials x {FULL_EPOCHS} epochs = {FLAT_TRIALS * FULL_EPOCHS} "
          f"epochs; staged: {' + '.join(map(str, STAGE_EPOCHS))} = {sum(STAGE_EPOCHS)} epochs")
    print(f"{'dataset':14} {'best flat':>9} {'staged':>7} {'ratio':>6}   "
          f"{'t* flat':>8} {'staged':>7} {'ratio':>6}  {'reached':>7}   "
          f"{'epochs flat/staged':>18}  target")
    with tempfile.TemporaryDirectory() as folder:
        for dataset in args.datasets.split(","):
            runs = {kind: [_one(Path(folder), dataset, seed, kind == "staged")
                           for seed in range(args.seeds)] for kind in ("flat", "staged")}
            best = {k: statistics.median(r["best"] for r in rs) for k, rs in runs.items()}
            target = min(best.values())
            times = {k: [_time_to(r["curve"], target) for r in rs] for k, rs in runs.items()}
            reach = {k: statistics.median(ts) for k, ts in times.items()}
            reached = "/".join(str(sum(t < float("inf") for t in ts)) for ts in times.values())
            epochs = {k: statistics.median(r["epochs"] for r in rs) for k, rs in runs.items()}
            print(f"{dataset:14} {best['flat']:9.4f} {best['staged']:7.4f} "
                  f"{best['staged'] / best['flat']:6.3f}   {reach['flat']:7.1f}s "
                  f"{reach['staged']:6.1f}s {reach['staged'] / reach['flat']:6.2f}  "
                  f"{reached:>7}   "
                  f"{epochs['flat']:>8.0f} / {epochs['staged']:<8.0f}  {target:.4f}",
                  flush=True)


if __name__ == "__main__":
    main()
