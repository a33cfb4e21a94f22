"""Training data: built-in datasets, CSV and NPZ files, a stratified split, normalization."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpo.errors import DataError
from hpo.spec import DataSpec


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


def _builtin(spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    if spec.dataset == "synthetic":
        informative = min(spec.n_features, max(2, math.ceil(math.log2(spec.n_classes)) + 1,
                                               spec.n_features // 2))
        return datasets.make_classification(
            n_samples=spec.n_samples, n_features=spec.n_features, n_informative=informative,
            n_redundant=0, n_classes=spec.n_classes, n_clusters_per_class=1,
            random_state=spec.seed,
        )
    loaders = {
        "digits": datasets.load_digits, "iris": datasets.load_iris,
        "wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer,
    }
    bunch = loaders[spec.dataset]()
    return bunch.data, bunch.target


def _read_csv(path: Path, label: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if label not in columns:
            raise DataError(f"{where}: {path.name} has no column {label!r}; its columns: "
                            f"{', '.join(columns) or 'none (empty file?)'}")
        features = [c for c in columns if c != label]
        rows = list(reader)
    if not rows:
        raise DataError(f"{where}: {path.name} has a header but no rows")
    x = np.empty((len(rows), len(features)), dtype=np.float64)
    for i, row in enumerate(rows):
        for j, column in enumerate(features):
            cell = (row[column] or "").strip()
            try:
                x[i, j] = float(cell) if cell else math.nan
            except ValueError:
                raise DataError(
                    f"{where}: column {column!r} of {path.name} is not numeric (row {i + 2}: "
                    f"{cell!r}); encode it as numbers or drop it"
                ) from None
    return x, np.array([row[label] for row in rows])


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
    return x.astype(np.float64), y


def _check(x: np.ndarray, y_raw: np.ndarray, where: str) -> None:
    if np.isnan(x).any():
        row, column = np.argwhere(np.isnan(x))[0]
        raise DataError(f"{where}: the data has missing values (NaN), first in feature "
                        f"{column} of row {row}; fill or drop them")
    if len(np.unique(y_raw)) < 2:
        raise DataError(f"{where}: the labels have fewer than two classes "
                        f"({np.unique(y_raw).tolist()}); a classifier needs at least two")


NORMALIZERS = {
    # name -> (shift, scale) computed from the training split only
    "standard": lambda x: (x.mean(0), _nonzero(x.std(0))),
    "center": lambda x: (x.mean(0), np.ones(x.shape[1])),
    "minmax": lambda x: ((x.max(0) + x.min(0)) / 2, _nonzero((x.max(0) - x.min(0)) / 2)),
    "none": lambda x: (np.zeros(x.shape[1]), np.ones(x.shape[1])),
}


def _nonzero(scale: np.ndarray) -> np.ndarray:
    # A constant feature would divide by zero; leave it unscaled.
    return np.where(scale > 0, scale, 1.0)


def normalization(x_train: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(shift, scale) so that (x - shift) / scale normalizes; minmax maps to [-1, 1]."""
    return NORMALIZERS[method](x_train)


def load_data(spec: DataSpec, base: Path, where: str = "objective.data") -> Dataset:
    """Read, check, split (stratified, seeded) and normalize the data a spec names."""
    from sklearn.model_selection import train_test_split

    if spec.dataset:
        x, y_raw = _builtin(spec)
    else:
        path = base / spec.path
        if not path.is_file():
            raise DataError(f"{where}.path: no such file {str(path)!r} (paths are relative "
                            "to the study file)")
        if path.suffix == ".csv":
            x, y_raw = _read_csv(path, spec.label, f"{where}.path")
        else:
            x, y_raw = _read_npz(path, f"{where}.path")
    _check(x, y_raw, where)
    classes, y = np.unique(y_raw, return_inverse=True)
    try:
        x_train, x_val, y_train, y_val = train_test_split(
            x, y, test_size=spec.val_fraction, stratify=y, random_state=spec.seed)
    except ValueError as e:
        raise DataError(f"{where}: cannot split the data for validation ({e}); "
                        "add rows or change val_fraction") from None
    shift, scale = normalization(x_train, spec.normalize)
    return Dataset(
        x_train=((x_train - shift) / scale).astype(np.float32), y_train=y_train.astype(np.int64),
        x_val=((x_val - shift) / scale).astype(np.float32), y_val=y_val.astype(np.int64),
        classes=[str(c) for c in classes],
    )
