"""Torch's threads on every path that trains on the CPU: one, unless the study file says
`train.threads`, and OpenMP threads that wait passively. (How long a trial takes beside a CPU
hog is measured by `benchmarks/contention.py`, not here.)"""

from __future__ import annotations

import os
import subprocess

import optuna
import pytest
import torch

import hpo
from hpo.spec import load_spec
from hpo.training import LOCAL_WORKERS_ENV, loop
from hpo.training.data import DataConfig, load_data
from hpo.training.loop import TrainConfig, train
from hpo.training.pack import Pack
from hpo.wisdom.check import run_checks
from hpo.wisdom.lr_find import find_lr
from tests.conftest import HPO, study_yaml, write_study


def _study(threads: int | None = None, n_trials: int | None = 2, extra: str = "") -> str:
    told = f", threads: {threads}" if threads else ""
    return study_yaml("threads", direction="maximize", metric="val_accuracy", n_trials=n_trials,
                      trainer=f"""
                          data: {{dataset: iris}}
                          model: {{hidden: [8]}}
                          train: {{epochs: 1{told}}}
                      """, space="lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}",
                      extra=extra)


STAGED = _study(n_trials=None, extra="""
    stages:
      - {name: lr, n_trials: 5}
      - {name: fine, n_trials: 2}
""")


@pytest.fixture
def iris():
    return load_data(DataConfig(dataset="iris"), None)


@pytest.fixture(autouse=True)
def two_threads():
    """Torch on two threads before each path runs, so that one is the path's own choice."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _stored_threads(path) -> set[int]:
    url = f"sqlite:///{path.parent / 'threads.db'}"
    names = [s.study_name for s in optuna.get_all_study_summaries(url)]
    return {t.user_attrs["threads"] for name in names
            for t in optuna.load_study(study_name=name, storage=url).trials}


@pytest.mark.parametrize(("cpus", "workers"), [(1, None), (2, None), (16, None), (16, "2")])
def test_one_thread_whatever_the_cpus_and_the_local_workers(monkeypatch, cpus, workers):
    monkeypatch.setattr(loop, "usable_cpus", lambda: cpus)
    if workers is None:
        monkeypatch.delenv(LOCAL_WORKERS_ENV, raising=False)
    else:
        monkeypatch.setenv(LOCAL_WORKERS_ENV, workers)
    assert loop.default_threads() == 1


@pytest.mark.parametrize(("told", "expected"), [(None, 1), (2, 2)])
def test_the_trainer_and_a_pack_train_on_one_thread_unless_told(iris, told, expected):
    result = train(TrainConfig(hidden=[8], epochs=1, threads=told), iris)
    assert result.threads == expected
    torch.set_num_threads(3)
    Pack(iris, 2, "cpu", told)
    assert torch.get_num_threads() == expected


@pytest.mark.parametrize(("told", "expected"), [(None, 1), (2, 2)])
def test_check_and_lr_find_probe_on_one_thread_unless_told(tmp_path, told, expected):
    spec = load_spec(write_study(tmp_path, _study(told)))
    run_checks(spec, {})
    assert torch.get_num_threads() == expected
    torch.set_num_threads(3)
    find_lr(spec, {}, seeds=1)
    assert torch.get_num_threads() == expected


@pytest.mark.parametrize(("told", "expected"), [(None, 1), (2, 2)])
def test_the_python_api_trains_on_one_thread_unless_told(tmp_path, told, expected):
    path = write_study(tmp_path, _study(told))
    hpo.run(path, quiet=True)
    assert _stored_threads(path) == {expected}


def test_every_stage_of_a_staged_file_trains_on_one_thread(tmp_path):
    path = write_study(tmp_path, STAGED)
    hpo.run(path, quiet=True)
    assert _stored_threads(path) == {1}


@pytest.mark.parametrize("given", [None, "ACTIVE"])
def test_hpo_run_with_one_worker_waits_passively_unless_the_user_says(tmp_path, given):
    path = write_study(tmp_path, _study())
    env = {**os.environ, "OMP_DISPLAY_ENV": "VERBOSE"}  # libgomp prints its settings
    env.pop("OMP_WAIT_POLICY", None)
    if given:
        env["OMP_WAIT_POLICY"] = given
    done = subprocess.run([HPO, "run", str(path), "--workers", "1", "-q"], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert _stored_threads(path) == {1}
    if "OPENMP DISPLAY ENVIRONMENT" not in done.stderr:
        pytest.skip("this torch's OpenMP does not print its settings (not libgomp)")
    # Waiting passively is a spin count of zero; libgomp's default spins 300000 times first.
    assert ("GOMP_SPINCOUNT = '0'" in done.stderr) == (given is None)
    if given:
        assert f"OMP_WAIT_POLICY = '{given}'" in done.stderr
