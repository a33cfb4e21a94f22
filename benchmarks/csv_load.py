"""Loading a large CSV for the built-in trainer: hpo's reader against Python's csv module.

Writes a CSV of `--rows` x `--columns` random features and a string label (1M x 50 with 4
decimals by default, about 400 MB; `--digits -1` writes full precision, about 1 GB), then
times `hpo.training.data.load_data` (parse, check, stratified split, normalize) against
parsing the same file with `csv.DictReader` and `float()` per cell, the way hpo read CSV
before. The goal: 1M x 50 in 5 s or less.

    python benchmarks/csv_load.py [--rows 1000000] [--columns 50] [--digits 4]
        [--baseline-rows 100000]

The csv-module baseline runs on the first `--baseline-rows` rows and is scaled up linearly
(it is linear: one Python float() per cell), so the benchmark finishes in a minute.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np

from hpo.training.data import DataConfig, load_data

GOAL_S = 5.0


def write_file(path: Path, rows: int, columns: int, digits: int | None) -> None:
    """Normal features (rounded to `digits` decimals if given) and a pos/neg label."""
    import polars as pl

    rng = np.random.default_rng(0)
    chunk = 100_000
    with path.open("wb") as handle:
        for start in range(0, rows, chunk):
            x = rng.normal(size=(min(chunk, rows - start), columns))
            if digits is not None:
                x = np.round(x, digits)
            frame = pl.DataFrame(x, schema=[f"f{j}" for j in range(columns)])
            frame = frame.with_columns(label=pl.Series(np.where(x[:, 0] > 0, "pos", "neg")))
            frame.write_csv(handle, include_header=start == 0)


def csv_module_seconds(path: Path, rows: int) -> float:
    """The old reader: DictReader, then float() per cell, for the first `rows` rows."""
    started = time.perf_counter()
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        features = [c for c in reader.fieldnames if c != "label"]
        x = np.empty((rows, len(features)))
        for i, row in enumerate(itertools.islice(reader, rows)):
            for j, column in enumerate(features):
                x[i, j] = float(row[column])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=50)
    parser.add_argument("--baseline-rows", type=int, default=100_000)
    parser.add_argument("--digits", type=int, default=4,
                        help="decimals per feature (as exported data has); -1: full precision")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.csv"
        write_file(path, args.rows, args.columns, None if args.digits < 0 else args.digits)
        size_mb = path.stat().st_size / 1e6
        started = time.perf_counter()
        data = load_data(DataConfig(path=path.name, label="label"), Path(folder))
        hpo_s = time.perf_counter() - started
        assert len(data.x_train) + len(data.x_val) == args.rows
        baseline_rows = min(args.baseline_rows, args.rows)
        baseline_s = csv_module_seconds(path, baseline_rows) * args.rows / baseline_rows
    precision = "full precision" if args.digits < 0 else f"{args.digits} decimals"
    print(f"file: {args.rows} rows x {args.columns} features ({precision}) + label, "
          f"{size_mb:.0f} MB")
    print(f"hpo load_data (parse, check, split, normalize): {hpo_s:.2f} s "
          f"(goal <= {GOAL_S:.0f} s: {'met' if hpo_s <= GOAL_S else 'NOT met'})")
    print(f"csv module + float() per cell (measured on {baseline_rows} rows, scaled): "
          f"{baseline_s:.1f} s")
    print(f"ratio hpo / csv module: {hpo_s / baseline_s:.3f}x")


if __name__ == "__main__":
    main()
