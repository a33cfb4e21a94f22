"""Packed training against one run at a time: accuracy of each member, and training speed.

Draws configurations from the quickstart's search space (its model: 64-128-128-10 with batch
norm, 20 epochs), trains them one after another with the trainer alone (`loop.train`) and
all at once as a pack (`pack.train_packed`), in one process on one thread, and prints:
- each member's best validation accuracy both ways and the largest difference, in points
  (the goal: within 0.5);
- the training time both ways and its ratio, for the whole draw and for draws that share
  a batch size (the case packing is for: one stacked model).

    python benchmarks/pack.py [--members 8] [--epochs 20] [--seed 0] [--device cpu]
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import yaml

from hpo.training import loop
from hpo.training.data import DataConfig, load_data
from hpo.training.loop import TrainConfig, train
from hpo.training.pack import train_packed

QUICKSTART = Path(__file__).resolve().parent.parent / "studies" / "quickstart.yaml"


def draw(rng: random.Random, n: int, epochs: int, device: str, batch_size: int | None
         ) -> list[TrainConfig]:
    """`n` configurations from the quickstart's space (log-uniform lr, as TPE starts)."""
    study = yaml.safe_load(QUICKSTART.read_text())
    space = study["search_space"]
    model, train_section = study["objective"]["model"], study["objective"]["train"]
    configs = []
    for i in range(n):
        low, high = space["lr"]["low"], space["lr"]["high"]
        configs.append(TrainConfig(
            hidden=model["hidden"], activation=model["activation"],
            batch_norm=model["batch_norm"], epochs=epochs, lr_decay=train_section["lr_decay"],
            seed=i, threads=1, device=device,
            lr=10 ** rng.uniform(math.log10(low), math.log10(high)),
            dropout=rng.uniform(space["dropout"]["low"], space["dropout"]["high"]),
            batch_size=batch_size or rng.choice(space["batch_size"]["choices"]),
            initializer=rng.choice(space["initializer"]["choices"]),
            optimizer=rng.choice(space["optimizer"]["choices"]),
            divergence_factor=3.0))
    return configs


def compare(label: str, configs: list[TrainConfig], data) -> None:
    started = time.perf_counter()
    alone = [train(config, data) for config in configs]
    alone_s = time.perf_counter() - started
    started = time.perf_counter()
    packed = train_packed(configs, data)
    packed_s = time.perf_counter() - started
    differences = []
    for config, one, other in zip(configs, alone, packed, strict=True):
        a, p = one.best_value or 0.0, other.best_value or 0.0
        differences.append(abs(a - p) * 100)
        print(f"  {config.optimizer:9s} batch {config.batch_size:3d} lr {config.lr:.2e}: "
              f"alone {a:.4f} ({one.epochs_run} epochs), packed {p:.4f} "
              f"({other.epochs_run} epochs)")
    print(f"{label}: largest difference {max(differences):.2f} points, mean "
          f"{sum(differences) / len(differences):.2f}; training {alone_s:.1f} s one at a "
          f"time, {packed_s:.1f} s packed: {packed_s / alone_s:.2f}x "
          f"({alone_s / packed_s:.2f}x the trials per second)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    data = load_data(DataConfig(dataset="digits", normalize="standard", val_fraction=0.2,
                                seed=0), Path("."), "digits")
    loop.warm_up()
    rng = random.Random(args.seed)
    compare(f"{args.members} draws from the quickstart space",
            draw(rng, args.members, args.epochs, args.device, None), data)
    for batch_size in (32, 256):
        compare(f"{args.members} draws, all batch {batch_size}",
                draw(rng, args.members, args.epochs, args.device, batch_size), data)


if __name__ == "__main__":
    main()
