"""The Python API as a notebook uses it: `import hpo`, `hpo.run(path, **overrides)`,
`hpo.load(path)`, each returning a plain optuna.Study."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import optuna
import pytest

import hpo
from hpo.errors import HpoError
from tests.conftest import study_yaml, write_study

QUAD = study_yaml(n_trials=3, sampler="{type: tpe, seed: 0}",
                  space="x: {type: float, low: -10.0, high: 10.0}")


def test_import_hpo_loads_neither_torch_nor_optuna_until_called(tmp_path):
    path = write_study(tmp_path, QUAD)
    script = textwrap.dedent(f"""
        import sys
        import hpo
        assert callable(hpo.run) and callable(hpo.load)
        heavy = [m for m in ("optuna", "torch", "sqlalchemy") if m in sys.modules]
        assert not heavy, heavy
        study = hpo.run({str(path)!r}, quiet=True)
        print(type(study).__mro__[-2].__module__, len(study.trials))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["optuna.study.study", "3"]


def test_run_takes_overrides_and_load_reads_the_study_back(tmp_path):
    path = write_study(tmp_path, QUAD)
    study = hpo.run(path, n_trials=5, sampler={"type": "random", "seed": 3}, quiet=True)
    assert isinstance(study, optuna.Study)
    assert len(study.trials) == 5 and study.best_value >= 0
    loaded = hpo.load(path)
    assert [t.params for t in loaded.trials] == [t.params for t in study.trials]
    # The override is part of the study's identity: the file as written is another spec.
    changed = r"sampler.type is 'random' there but 'tpe' \(the default\)"
    with pytest.raises(HpoError, match=changed):
        hpo.run(path, n_trials=6, quiet=True)
    again = hpo.run(path, n_trials=6, sampler={"type": "random", "seed": 3}, quiet=True)
    assert len(again.trials) == 6


def test_run_with_a_storage_and_workers(tmp_path):
    path = write_study(tmp_path, QUAD)
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    study = hpo.run(path, storage=url, workers=2, n_trials=4, quiet=True)
    assert len([t for t in study.get_trials() if t.state.is_finished()]) == 4
    assert len(hpo.load(path, storage=url).trials) == 4
    assert not (tmp_path / "quad.db").exists()
    with pytest.raises(HpoError, match="each worker process reads"):
        hpo.run(path, storage=url, workers=2, sampler={"type": "random"})


def test_mistakes_are_one_line_errors(tmp_path):
    path = write_study(tmp_path, QUAD)
    with pytest.raises(HpoError) as raised:
        hpo.run(path, n_trails=3)
    assert str(raised.value) == ("hpo.run: unknown keyword 'n_trails'; did you mean "
                                 "'n_trials'? give a study-file field or one of storage, "
                                 "n_trials, timeout, workers, quiet, worker_id")
    with pytest.raises(HpoError, match="search_space.x: low must be less than high"):
        hpo.run(path, search_space={"x": {"type": "float", "low": 1.0, "high": 0.0}})
    with pytest.raises(HpoError, match="no study database at"):
        hpo.load(path)
    assert not (tmp_path / "quad.db").exists()


@pytest.mark.parametrize("option, value", [("n_trials", 0), ("n_trials", -3), ("workers", 0),
                                           ("n_trials", 2.5), ("timeout", 0), ("timeout", -1)])
def test_counts_the_cli_refuses_are_refused_before_anything_is_written(tmp_path, option, value):
    path = write_study(tmp_path, QUAD)
    with pytest.raises(HpoError) as raised:
        hpo.run(path, **{option: value})
    assert str(raised.value).startswith(f"hpo.run: {option}={value!r}: give a")
    assert not (tmp_path / "quad.db").exists()
