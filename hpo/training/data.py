"""Training data: built-in datasets, CSV and NPZ files, a stratified split, normalization."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpo.errors import DataError
from hpo.training.config import DataConfig, DatasetName, NormalizationName


@dataclass(frozen=True)
class Dataset:
    """A normalized train/validation split: float32 features, int64 labels 0..C-1."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: list[str]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]


# The files scikit-learn ships for its small datasets: (file, rows to skip). Its loaders
# parse them too, but importing sklearn.datasets costs 1.3 s of every worker's startup.
SHIPPED: dict[DatasetName, tuple[str, int]] = {
    "digits": ("digits.csv.gz", 0), "iris": ("iris.csv", 1), "wine": ("wine_data.csv", 1),
    "breast_cancer": ("breast_cancer.csv", 1),
}


def _builtin(config: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    if config.dataset == "synthetic":
        from sklearn.datasets import make_classification

        informative = min(config.n_features, max(2, math.ceil(math.log2(config.n_classes)) + 1,
                                                 config.n_features // 2))
        return make_classification(
            n_samples=config.n_samples, n_features=config.n_features, n_informative=informative,
            n_redundant=0, n_classes=config.n_classes, n_clusters_per_class=1,
            random_state=config.seed,
        )
    return shipped_dataset(config.dataset)


def shipped_dataset(name: DatasetName) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of one of scikit-learn's small datasets, read from its file without importing
    sklearn; through its loader if a release moved the file."""
    import importlib.util

    file_name, skip = SHIPPED[name]
    package = importlib.util.find_spec("sklearn")  # finds the package without importing it
    folders = package.submodule_search_locations if package else None
    path = Path(folders[0], "datasets", "data", file_name) if folders else None
    if path is None or not path.is_file():
        from sklearn import datasets

        return getattr(datasets, f"load_{name}")(return_X_y=True)
    table = np.loadtxt(path, delimiter=",", skiprows=skip)
    return table[:, :-1], table[:, -1].astype(np.int64)


# Rows that fix a CSV column's type; text further down a numeric column is found on a
# second, slower read that types every column from all its rows.
TYPE_ROWS = 10_000


def _read_csv(path: Path, label: str, where: str
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features as float32 (empty cells NaN), each row's class index and the sorted classes,
    of a CSV file with a header.

    polars parses on every core: 1M rows x 50 columns in about 3 s on 2 cores, where Python's
    csv module took over a minute.
    """
    import polars as pl

    try:
        frame = _csv_frame(path, TYPE_ROWS)
    except pl.exceptions.ComputeError as e:
        if "could not parse" not in str(e):
            raise DataError(f"{where}: {path.name} is not a valid CSV file "
                            f"({str(e).splitlines()[0]}); every row needs one cell per "
                            "header column") from None
        frame = _csv_frame(path, None)
    columns = frame.columns
    if label not in columns:
        raise DataError(f"{where}: {path.name} has no column {label!r}; its columns: "
                        f"{', '.join(columns) or 'none (empty file?)'}")
    if frame.height == 0:
        raise DataError(f"{where}: {path.name} has a header but no rows")
    features = [c for c in columns if c != label]
    for column in features:
        kind = frame.schema[column]
        if not kind.is_numeric() and kind != pl.Null:  # a column of empty cells is Null
            row, cell = _first_non_number(frame[column])
            raise DataError(
                f"{where}: column {column!r} of {path.name} is not numeric (row {row + 2}: "
                f"{cell!r}); encode it as numbers or drop it")
    labels = frame[label]
    if labels.null_count():
        row = labels.is_null().arg_true()[0]
        raise DataError(f"{where}: column {label!r} of {path.name} has an empty label in row "
                        f"{row + 2}; give every row a label or drop it")
    # float32 as the trainer uses it, row by row as the split gathers it; nulls become NaN
    x = frame.select(features).cast(pl.Float32).to_numpy(order="c")
    # Class indexes by polars, not np.unique: that sorts a million Python strings for seconds.
    y = (labels.rank("dense") - 1).to_numpy().astype(np.int64)
    return x, y, labels.unique().sort().to_numpy()


def _csv_frame(path: Path, type_rows: int | None) -> Any:
    import polars as pl

    try:
        return pl.read_csv(path, infer_schema_length=type_rows)
    except pl.exceptions.NoDataError:
        return pl.DataFrame()  # an empty file: no columns


def _first_non_number(cells: Any) -> tuple[int, str]:
    """The first cell of a column that does not read as a number, and its row (0-based)."""
    for row, cell in enumerate(cells.to_list()):
        if cell is None:
            continue
        if isinstance(cell, str):
            try:
                float(cell)
                continue
            except ValueError:
                pass
        return row, str(cell)  # text, or a boolean or date polars recognized
    return 0, str(cells[0])


def _read_npz(path: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as arrays:
        missing = [k for k in ("X", "y") if k not in arrays]
        if missing:
            raise DataError(f"{where}: {path.name} has no array {missing[0]!r}; it has: "
                            f"{', '.join(arrays.files)} (save X and y)")
        x, y = arrays["X"], arrays["y"]
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{where}: {path.name} needs X of shape (n, features) and y of shape "
                        f"(n,); got {x.shape} and {y.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{where}: X in {path.name} is not numeric (dtype {x.dtype})")
    return x.astype(np.float32), y  # as the trainer uses it: one copy, not two


def _check(x: np.ndarray, classes: np.ndarray, where: str) -> None:
    if np.isnan(x).any():
        row, column = np.argwhere(np.isnan(x))[0]
        raise DataError(f"{where}: the data has missing values (NaN), first in feature "
                        f"{column} of row {row}; fill or drop them")
    if len(classes) < 2:
        raise DataError(f"{where}: the labels have fewer than two classes "
                        f"({classes.tolist()}); a classifier needs at least two")


def stratified_split(y: np.ndarray, classes: np.ndarray, val_fraction: float, seed: int,
                     where: str) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, validation), both shuffled: each class gives `val_fraction` of its
    rows (at least one, and keeps at least one) to validation."""
    counts = np.bincount(y, minlength=len(classes))
    if (counts < 2).any():
        lonely = classes[np.argmax(counts < 2)]
        raise DataError(f"{where}: cannot split the data for validation (class {lonely!r} "
                        "has only one row); add rows or drop that class")
    # ceil(n x val_fraction) rows in all, shared in proportion (largest remainders first)
    total = math.ceil(len(y) * val_fraction)
    exact = counts * total / len(y)
    n_val = np.floor(exact).astype(np.int64)
    n_val[np.argsort(n_val - exact, kind="stable")[:total - n_val.sum()]] += 1
    n_val = np.clip(n_val, 1, counts - 1)
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(y))
    grouped = shuffled[np.argsort(y[shuffled], kind="stable")]  # class by class, shuffled
    starts = np.cumsum(counts) - counts
    place_in_class = np.arange(len(y)) - np.repeat(starts, counts)
    to_val = place_in_class < np.repeat(n_val, counts)
    return rng.permutation(grouped[~to_val]), rng.permutation(grouped[to_val])


Normalizer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

NORMALIZERS: dict[NormalizationName, Normalizer] = {
    # name -> (shift, scale) computed from the training split only
    "standard": lambda x: (x.mean(0), _nonzero(x.std(0))),
    "center": lambda x: (x.mean(0), np.ones(x.shape[1])),
    "minmax": lambda x: ((x.max(0) + x.min(0)) / 2, _nonzero((x.max(0) - x.min(0)) / 2)),
    "none": lambda x: (np.zeros(x.shape[1]), np.ones(x.shape[1])),
}


def _nonzero(scale: np.ndarray) -> np.ndarray:
    # A constant feature would divide by zero; leave it unscaled.
    return np.where(scale > 0, scale, 1.0)


def normalization(x_train: np.ndarray, method: NormalizationName) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) so that (x - shift) / scale normalizes; minmax maps to [-1, 1]."""
    return NORMALIZERS[method](x_train)


def load_data(config: DataConfig, base: Path, where: str = "objective.data") -> Dataset:
    """Read, check, split (stratified, seeded) and normalize the data `config` names; a file's
    path is relative to `base`, and `where` starts each error's message."""
    if config.dataset:
        x, y_raw = _builtin(config)
        classes, y = np.unique(y_raw, return_inverse=True)
    else:
        path = base / config.path
        if not path.is_file():
            raise DataError(f"{where}.path: no such file {str(path)!r} (paths are relative "
                            "to the study file)")
        if path.suffix == ".csv":
            x, y, classes = _read_csv(path, config.label, f"{where}.path")
        else:
            x, y_raw = _read_npz(path, f"{where}.path")
            classes, y = np.unique(y_raw, return_inverse=True)
    _check(x, classes, where)
    train, val = stratified_split(y, classes, config.val_fraction, config.seed, where)
    # One gather into one float32 array, normalized in place: a million-row file would
    # otherwise be copied four times over.
    rows = np.take(np.asarray(x, dtype=np.float32), np.concatenate([train, val]), axis=0)
    del x
    x_train, x_val = rows[:len(train)], rows[len(train):]
    shift, scale = normalization(x_train, config.normalize)
    rows -= shift
    rows /= scale
    return Dataset(x_train=x_train, y_train=y[train], x_val=x_val, y_val=y[val],
                   classes=[str(c) for c in classes])
