"""`hpo lr-find`'s suggestion against the best constant learning rate, found exhaustively.

    python benchmarks/lr_find.py [--setups digits-lr,synthetic,breast_cancer] [--seeds 3]

For each setup and seed, the range test's pick (`find_lr`, one ramp per seed) is set against
`reference`: every lr of a log grid across the ramp's range (4 per decade) trained alone
from the same fresh model and batch order for the ramp's 100 steps at a constant rate, scored
by the mean training loss of its last 10 steps; its divergence point is the smallest lr the
divergence rule (3x, NaN) stopped. Prints the suggestion, the reference's best lr, their
ratio (the goal: within 3x, and below the divergence point) and the divergence point, then
how many picks met the goal. The first three setups are the ones tests/wisdom/
test_lr_find.py holds to it; the others are held out. One torch thread throughout.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import yaml

from hpo.spec import StudySpec, parse_spec
from hpo.wisdom.lr_find import find_lr, reference

ROOT = Path(__file__).resolve().parents[1]
GOAL = 3.0

# name: (data, model, train, the lr range searched: the ramp runs a decade past it).
SETUPS: dict[str, tuple[str, str, str, str]] = {
    "digits-lr": ("", "", "", ""),  # studies/digits-lr.yaml as shipped
    "synthetic": ("{dataset: synthetic, n_samples: 3000, n_features: 20, n_classes: 3}",
                  "{hidden: [64, 64]}", "{optimizer: momentum}", "1.0e-4, 1.0e-1"),
    "breast_cancer": ("{dataset: breast_cancer}", "{hidden: [64]}",
                      "{optimizer: adam, batch_size: 32}", "1.0e-4, 1.0e-2"),
    "wine-sgd": ("{dataset: wine}", "{hidden: [32]}", "{optimizer: sgd, batch_size: 16}",
                 "1.0e-4, 1.0e-1"),
    "digits-adam": ("{dataset: digits}", "{hidden: [128, 128]}", "{optimizer: adam}",
                    "1.0e-4, 1.0e-2"),
    "digits-momentum": ("{dataset: digits}", "{hidden: [64]}",
                        "{optimizer: momentum, batch_size: 32}", "1.0e-4, 1.0e-1"),
    "breast_cancer-sgd-bn": ("{dataset: breast_cancer}", "{hidden: [32, 32], batch_norm: true}",
                             "{optimizer: sgd}", "1.0e-3, 1.0"),
    "synthetic-adam": ("{dataset: synthetic, n_samples: 4000, n_features: 30, n_classes: 5}",
                       "{hidden: [128]}", "{optimizer: adam, batch_size: 128}",
                       "1.0e-4, 1.0e-2"),
    "wine-adam": ("{dataset: wine}", "{hidden: [32]}", "{optimizer: adam, batch_size: 16}",
                  "1.0e-4, 1.0e-2"),
    "iris-rmsprop": ("{dataset: iris}", "{hidden: [16]}", "{optimizer: rmsprop, batch_size: 16}",
                     "1.0e-4, 1.0e-2"),
}


def study(name: str) -> StudySpec:
    """The setup's study: its own lr range, one torch thread."""
    if name == "digits-lr":
        path = ROOT / "studies" / "digits-lr.yaml"
        data = yaml.safe_load(path.read_text())
    else:
        path = Path(f"{name}.yaml")
        dataset, model, train, lr_range = SETUPS[name]
        low, high = (float(v) for v in lr_range.split(","))
        data = {"name": name, "direction": "maximize", "metric": "val_accuracy",
                "n_trials": 1,
                "objective": {"trainer": "mlp", "data": yaml.safe_load(dataset),
                              "model": yaml.safe_load(model), "train": yaml.safe_load(train)},
                "search_space": {"lr": {"type": "float", "low": low, "high": high,
                                        "log": True}}}
    data["objective"].setdefault("train", {})["threads"] = 1
    return parse_spec(data, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setups", default=",".join(SETUPS),
                        help=f"comma-separated, of: {', '.join(SETUPS)}")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print(f"{'setup':22} {'seed':>4} {'suggested':>9} {'ref best':>9} {'ratio':>6} "
          f"{'ref diverged':>12}  verdict")
    ratios, met = [], 0
    for name in args.setups.split(","):
        spec = study(name)
        started = time.perf_counter()
        found = find_lr(spec, {}, seeds=args.seeds)
        sweeps = reference(spec, {}, seeds=args.seeds)
        for chosen, sweep in zip(found.seeds, sweeps, strict=True):
            ratio = chosen.suggested / sweep.best
            below = sweep.diverged_at is None or chosen.suggested < sweep.diverged_at
            good = 1 / GOAL <= ratio <= GOAL and below
            met += good
            ratios.append(ratio)
            diverged = f"{sweep.diverged_at:.2g}" if sweep.diverged_at else "none"
            print(f"{name:22} {chosen.seed:4} {chosen.suggested:9.2g} {sweep.best:9.2g} "
                  f"{ratio:6.2f} {diverged:>12}  "
                  + ("ok" if good else "above divergence" if not below else f"beyond {GOAL:g}x"))
        print(f"{'':22} {'all':>4} {found.suggested:9.2g}  (suggested over the seeds; "
              f"{time.perf_counter() - started:.1f} s)")
    logs = [math.log(r) for r in ratios]
    print(f"{met} of {len(ratios)} picks within {GOAL:g}x of the best lr and below divergence; "
          f"geometric mean ratio {math.exp(sum(logs) / len(logs)):.2f}, worst "
          f"x{math.exp(max(abs(v) for v in logs)):.2f}")


if __name__ == "__main__":
    main()
