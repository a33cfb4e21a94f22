from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from hpo.errors import DataError
from hpo.training import data as data_module
from hpo.training.data import SHIPPED, DataConfig, load_data, shipped_dataset


def test_builtin_digits_split_is_stratified_and_seeded(tmp_path):
    data = load_data(DataConfig(dataset="digits", val_fraction=0.2, seed=3), tmp_path)
    again = load_data(DataConfig(dataset="digits", val_fraction=0.2, seed=3), tmp_path)
    assert data.n_classes == 10 and data.n_features == 64
    assert len(data.x_val) == 360
    np.testing.assert_array_equal(data.x_train, again.x_train)
    train_share = np.bincount(data.y_train) / len(data.y_train)
    val_share = np.bincount(data.y_val) / len(data.y_val)
    assert np.abs(train_share - val_share).max() < 0.01


def test_the_split_uses_every_row_once_and_differs_by_seed(tmp_path):
    split = {seed: data_module.stratified_split(np.arange(100) % 3, np.arange(3), 0.25, seed,
                                                "where") for seed in (0, 1)}
    train, val = split[0]
    assert sorted(np.concatenate([train, val])) == list(range(100))
    assert len(val) == 25 and np.bincount(val % 3).tolist() == [9, 8, 8]
    assert not np.array_equal(split[0][1], split[1][1])


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_datasets_read_as_scikit_learn_loads_them(name):
    from sklearn import datasets

    x, y = shipped_dataset(name)
    want_x, want_y = getattr(datasets, f"load_{name}")(return_X_y=True)
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(y, want_y)


def test_a_moved_shipped_file_falls_back_to_scikit_learns_loader(monkeypatch):
    monkeypatch.setitem(SHIPPED, "iris", ("moved.csv", 1))
    x, y = shipped_dataset("iris")
    assert x.shape == (150, 4) and set(y) == {0, 1, 2}


def test_loading_digits_does_not_import_scikit_learn(tmp_path):
    code = ("import sys; from pathlib import Path; "
            "from hpo.training.data import DataConfig, load_data; "
            "load_data(DataConfig(dataset='digits'), Path('.')); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout
    assert out.strip() == "[]"


def test_standard_statistics_come_from_the_training_split_only(tmp_path):
    data = load_data(DataConfig(dataset="wine", normalize="standard"), tmp_path)
    np.testing.assert_allclose(data.x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(0), 1, atol=1e-4)
    # The validation split was scaled with the training statistics, not its own.
    assert np.abs(data.x_val.mean(0)).max() > 0.05


def test_minmax_maps_the_training_split_to_minus_one_one(tmp_path):
    data = load_data(DataConfig(dataset="iris", normalize="minmax"), tmp_path)
    np.testing.assert_allclose(data.x_train.min(0), -1, atol=1e-6)
    np.testing.assert_allclose(data.x_train.max(0), 1, atol=1e-6)


def test_center_only_subtracts_the_mean(tmp_path):
    centered = load_data(DataConfig(dataset="iris", normalize="center"), tmp_path)
    raw = load_data(DataConfig(dataset="iris", normalize="none"), tmp_path)
    np.testing.assert_allclose(centered.x_train, raw.x_train - raw.x_train.mean(0), atol=1e-5)


def test_synthetic_has_the_asked_shape(tmp_path):
    data = load_data(DataConfig(dataset="synthetic", n_samples=500, n_features=12, n_classes=3),
                     tmp_path)
    assert data.n_features == 12 and data.n_classes == 3
    assert len(data.x_train) + len(data.x_val) == 500


def write_csv(tmp_path, text):
    (tmp_path / "data.csv").write_text(text)
    return DataConfig(path="data.csv", label="kind", val_fraction=0.5)


def test_csv_with_string_labels(tmp_path):
    rows = "".join(f"{i},{i % 3 * 10},{'cat' if i % 2 else 'dog'}\n" for i in range(20))
    spec = write_csv(tmp_path, "a,b,kind\n" + rows)
    data = load_data(spec, tmp_path)
    assert data.classes == ["cat", "dog"]
    assert data.n_features == 2
    assert set(data.y_train) == {0, 1}


def test_csv_quoted_cells_numeric_labels_and_floats(tmp_path):
    rows = "".join(f'"{i}.5",{-i}e-3,"{i % 2}"\n' for i in range(10))
    (tmp_path / "data.csv").write_text('"a, first",b,kind\n' + rows)
    spec = DataConfig(path="data.csv", label="kind", val_fraction=0.5, normalize="none")
    data = load_data(spec, tmp_path)
    assert data.classes == ["0", "1"] and data.n_features == 2
    x = np.concatenate([data.x_train, data.x_val])
    assert sorted(x[:, 0]) == [i + 0.5 for i in range(10)]
    assert np.allclose(sorted(x[:, 1]), sorted(-i / 1000 for i in range(10)))


def test_npz(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "arrays.npz", X=rng.normal(size=(40, 5)), y=np.arange(40) % 4)
    data = load_data(DataConfig(path="arrays.npz"), tmp_path)
    assert data.n_classes == 4 and data.n_features == 5


@pytest.mark.parametrize(("text", "fragment"), [
    ("a,b,label\n1,2,x\n3,4,y\n", "data.csv has no column 'kind'; its columns: a, b, label"),
    ("a,b,kind\n1,red,x\n3,4,y\n", "column 'b' of data.csv is not numeric (row 2: 'red')"),
    ("a,b,kind\n1,,x\n3,4,y\n5,6,x\n7,8,y\n", "missing values (NaN), first in feature 1 of row 0"),
    ("a,b,kind\n1,2,x\n3,4,x\n", "fewer than two classes (['x'])"),
    ("a,b,kind\n", "has a header but no rows"),
    ("a,b,kind\n1,2,x\n3,4,y\n5,6,y\n", "(class 'x' has only one row); add rows or drop"),
    ("a,b,kind\n1,2,x\n3,4,\n5,6,y\n", "column 'kind' of data.csv has an empty label in row 3"),
    ("a,b,kind\n1,2,x,9\n3,4,y\n", "data.csv is not a valid CSV file (found more fields"),
    ("a,b,kind\n1,2,x\n3,4\n5,6,y\n", "column 'kind' of data.csv has an empty label in row 3"),
    ("", "data.csv has no column 'kind'; its columns: none (empty file?)"),
    ("a,b,kind\n1,true,x\n3,false,y\n", "column 'b' of data.csv is not numeric (row 2: 'True')"),
    # text far down a column that began with numbers, past the rows that typed it
    ("a,b,kind\n" + "1,2,x\n" * 200_000 + "1,red,y\n",
     "column 'b' of data.csv is not numeric (row 200002: 'red')"),
])
def test_bad_csv(tmp_path, text, fragment):
    spec = write_csv(tmp_path, text)
    with pytest.raises(DataError) as raised:
        load_data(spec, tmp_path)
    assert fragment in str(raised.value)
    assert "\n" not in str(raised.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file .*absent.csv"):
        load_data(DataConfig(path="absent.csv", label="y"), tmp_path)


def test_npz_without_y(tmp_path):
    np.savez(tmp_path / "arrays.npz", X=np.zeros((4, 2)))
    with pytest.raises(DataError, match="has no array 'y'; it has: X"):
        load_data(DataConfig(path="arrays.npz"), tmp_path)
