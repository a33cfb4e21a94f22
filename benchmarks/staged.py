"""Staged (lr first, then all, then fine) against a flat TPE study at the same training epochs.

    python benchmarks/staged.py [--seeds 5] [--datasets digits,wine,breast_cancer,synthetic]

For each dataset and seed, one process runs both side by side on fresh SQLite files:
- flat: TPE over the whole space, FLAT_TRIALS trials of FULL_EPOCHS epochs;
- staged: `studies/digits-staged.yaml`'s stages (lr alone at 4 epochs, everything at 8,
  everything refined at 20) on the same dataset and seed.
Both spend about the same training epochs (printed). It prints, per dataset, the median best
validation accuracy, and the median training epochs spent (every trial's `epochs_run`, in
the order the trials ended) until a run first reached the flat study's median best, with
how many runs reached it (a run that never does counts as infinitely many epochs), and the
staged/flat ratios (goal for epochs: at most 0.6x), then the same in wall-clock seconds.
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

from hpo.spec import parse_spec  # noqa: E402
from hpo.wisdom.stages import run_staged  # noqa: E402
from hpo.worker import runner  # noqa: E402

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
    from hpo.store.carry import is_carried

    spec = _spec(folder, dataset, seed, staged)
    options = runner.RunOptions(quiet=True, write_note=False)
    started = time.perf_counter()
    if staged:
        studies = [r.result.study for r in run_staged(spec, options)]
    else:
        studies = [runner.run(spec, options).study]
    wall = time.perf_counter() - started
    trials = [t for t in _trials(studies) if not is_carried(t)]  # carried ones trained once
    start = trials[0].datetime_start
    curve = []  # (seconds since start, epochs so far, best so far), as trials ended
    best, epochs = 0.0, 0
    for t in sorted((t for t in trials if t.datetime_complete is not None),
                    key=lambda t: t.datetime_complete):
        epochs += t.user_attrs.get("epochs_run", 0)
        best = max(best, t.value if t.value is not None else 0.0)
        curve.append(((t.datetime_complete - start).total_seconds(), epochs, best))
    return {"best": best, "curve": curve, "wall": wall, "epochs": epochs}


def _to(curve: list, target: float, index: int) -> float:
    """Seconds (index 0) or epochs (index 1) until the best so far first reached `target`."""
    return next((point[index] for point in curve if point[2] >= target), float("inf"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--datasets", default=",".join(DATA))
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"flat: {FLAT_TRIALS} trials x {FULL_EPOCHS} epochs = {FLAT_TRIALS * FULL_EPOCHS} "
          f"epochs; staged: {' + '.join(map(str, STAGE_EPOCHS))} = {sum(STAGE_EPOCHS)} epochs")
    print(f"{'dataset':14} {'best flat':>9} {'staged':>7}   {'epochs* flat':>12} {'staged':>7} "
          f"{'ratio':>6}   {'t* flat':>8} {'staged':>7} {'ratio':>6}  {'reached':>7}  target")
    with tempfile.TemporaryDirectory() as folder:
        for dataset in args.datasets.split(","):
            runs = {kind: [_one(Path(folder), dataset, seed, kind == "staged")
                           for seed in range(args.seeds)] for kind in ("flat", "staged")}
            best = {k: statistics.median(r["best"] for r in rs) for k, rs in runs.items()}
            target = best["flat"]  # the flat study's median best
            reach = {index: {k: statistics.median(_to(r["curve"], target, index) for r in rs)
                             for k, rs in runs.items()} for index in (0, 1)}
            reached = "/".join(str(sum(_to(r["curve"], target, 1) < float("inf") for r in rs))
                               for rs in runs.values())
            epochs, seconds = reach[1], reach[0]
            print(f"{dataset:14} {best['flat']:9.4f} {best['staged']:7.4f}   "
                  f"{epochs['flat']:12.0f} {epochs['staged']:7.0f} "
                  f"{epochs['staged'] / epochs['flat']:6.2f}   {seconds['flat']:7.1f}s "
                  f"{seconds['staged']:6.1f}s {seconds['staged'] / seconds['flat']:6.2f}  "
                  f"{reached:>7}  {target:.4f}", flush=True)


if __name__ == "__main__":
    main()
