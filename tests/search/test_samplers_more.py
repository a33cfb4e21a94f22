"""The gp, cmaes, qmc and auto samplers: real studies on SQLite, and what each refuses."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import typing

import optuna
import pytest
from optuna.trial import TrialState
from scipy.stats import qmc

from hpo.search.samplers import (
    AUTO_GP_TRIALS,
    AUTO_SAMPLER_ATTR,
    SAMPLERS,
    AutoSampler,
    make_sampler,
)
from hpo.spec import SamplerName, load_spec
from hpo.spec.distributions import suggest_all
from tests.conftest import cli, load, study_yaml, write_study

HPO = shutil.which("hpo") or os.path.join(os.path.dirname(sys.executable), "hpo")

# A 2-D quadratic with its minimum inside the box, and a categorical entry that costs 1.
OBJECTIVE = '''
import time


def objective(trial):
    p = trial.params
    time.sleep(p.get("sleep", 0.0))
    return (p["x"] - 0.7) ** 2 + (p["y"] + 1.3) ** 2 + (p.get("k") == "b")
'''

NUMERIC = """
  x: {type: float, low: -5.0, high: 5.0}
  y: {type: float, low: -5.0, high: 5.0}
"""


def study(tmp_path, sampler: str, n_trials: int, space: str = NUMERIC, name: str = "quad"):
    return write_study(tmp_path, study_yaml(name, n_trials=n_trials, sampler=sampler,
                                            space=space), objective=OBJECTIVE)


def run(path, *args: str):
    result = cli("run", path, "-q", *args)
    assert result.exit_code == 0, result.output
    return result


def run_workers(path, workers: int) -> None:
    """`hpo run --workers N` in a subprocess: N worker processes on the study's SQLite file."""
    done = subprocess.run([HPO, "run", str(path), "-q", "--workers", str(workers)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_every_sampler_name_of_the_spec_makes_a_sampler():
    assert set(SAMPLERS) == set(typing.get_args(SamplerName))


def test_a_misspelt_type_lists_every_sampler(tmp_path):
    result = cli("validate", study(tmp_path, "{type: bayes}", n_trials=5))
    assert result.exit_code == 1
    assert result.output == (f"Error: {tmp_path / 'study.yaml'}: sampler.type: Input should be "
                             "'tpe', 'random', 'grid', 'gp', 'cmaes', 'qmc' or 'auto' (got "
                             "'bayes')\n")


def test_gp_models_the_trials_and_beats_random_at_equal_trials(tmp_path):
    gp = study(tmp_path / "gp", "{type: gp, seed: 0}", n_trials=16)
    random = study(tmp_path / "random", "{type: random, seed: 0}", n_trials=16)
    run(gp)
    run(random)
    trials = load(gp).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 16
    # GPSampler's own record of the trials it proposed: all past its 10 random startup trials.
    modelled = [t.number for t in trials if "gp:relative_params:0" in t.system_attrs]
    assert modelled == list(range(10, 16))
    # Both draw the same 10 startup trials (seeded per trial); GP's 6 then close in.
    assert [t.params for t in trials[:10]] == [t.params for t in load(random).trials[:10]]
    assert load(gp).best_value < load(random).best_value / 10


def test_cmaes_with_margin_carries_its_state_from_trial_to_trial(tmp_path):
    path = study(tmp_path, "{type: cmaes, seed: 0}", n_trials=16, space=NUMERIC
                 + "  n: {type: int, low: 1, high: 4}\n")
    run(path)
    trials = load(path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 16
    generations = [t.system_attrs.get("cmawm:generation") for t in trials]
    # A sampler made per trial restores the optimizer the last told trial stored: the
    # generations advance (3 dimensions: 7 trials a generation, after 1 random startup trial).
    assert generations[0] is None
    assert generations[1:] == [0] * 7 + [1] * 7 + [2]
    assert any("cmawm:optimizer:0" in t.system_attrs for t in trials)
    assert all("x_for_tell" in t.system_attrs for t in trials[1:])  # margin: CMAwM


def sobol_points(seed: int, n: int, dimensions: int) -> list[list[float]]:
    return qmc.Sobol(dimensions, scramble=True, seed=seed).random(n).tolist()


def test_qmc_trial_n_takes_point_n_of_the_seeds_sobol_sequence(tmp_path):
    # A conditional entry takes its coordinate of the trial's point when its condition holds.
    path = study(tmp_path, "{type: qmc, seed: 7}", n_trials=8, space="""
  x: {type: float, low: -2.0, high: 2.0}
  k: {type: categorical, choices: [a, b]}
  m: {type: float, low: 0.0, high: 10.0, when: {k: [b]}}
  y: {type: float, low: -5.0, high: 5.0}
""")
    run(path)
    trials = load(path).trials
    for trial, (x, k, m, y) in zip(trials, sobol_points(7, 8, 4), strict=True):
        expected = {"x": -2 + 4 * x, "k": "ab"[int(2 * k)], "y": -5 + 10 * y}
        if expected["k"] == "b":
            expected["m"] = 10 * m
        assert trial.params == pytest.approx(expected)
    assert {t.params["k"] for t in trials} == {"a", "b"}


def test_qmc_asked_again_for_a_trial_gives_the_same_point(tmp_path):
    # hpo asks again for the same claimed trial after the database went away; Optuna's own
    # QMCSampler counts its points in the study and would move on to the next one.
    spec = load_spec(study(tmp_path, "{type: qmc, seed: 3}", n_trials=4))
    sampler = make_sampler(spec)
    opened = optuna.create_study(sampler=sampler)
    trial = opened.ask()
    suggest_all(trial, spec.search_space)
    frozen = opened._storage.get_trial(trial._trial_id)
    space = sampler.infer_relative_search_space(opened, frozen)
    for _ in range(2):
        assert sampler.sample_relative(opened, frozen, space) == trial.params


def test_unseeded_qmc_workers_share_one_scramble(tmp_path):
    from hpo.search.samplers import study_scramble_seed

    path = study(tmp_path, "{type: qmc}", n_trials=8,
                 space=NUMERIC + "  sleep: {type: categorical, choices: [0.1]}\n")
    run_workers(path, 2)
    opened = load(path)
    trials = opened.trials
    assert len({t.user_attrs["worker_id"] for t in trials}) == 2
    points = sobol_points(study_scramble_seed(opened), 8, 2)
    assert [(t.params["x"], t.params["y"]) for t in trials] == [
        (pytest.approx(-5 + 10 * x), pytest.approx(-5 + 10 * y)) for x, y in points]


def two_workers(path, rounds: int) -> list[optuna.trial.FrozenTrial]:
    """Trials of two workers on the study's SQLite file, each with the sampler it makes from
    the study file, both asking (and drawing) their trial before either tells its result."""
    spec = load_spec(path)
    storage = f"sqlite:///{path.parent / spec.name}.db"
    optuna.create_study(study_name=spec.name, storage=storage)
    workers = [optuna.load_study(study_name=spec.name, storage=storage,
                                 sampler=make_sampler(spec)) for _ in range(2)]
    for _ in range(rounds):
        asked = [worker.ask() for worker in workers]
        drawn = [suggest_all(trial, spec.search_space) for trial in asked]
        for worker, trial, p in zip(workers, asked, drawn, strict=True):
            worker.tell(trial, (p["x"] - 0.7) ** 2 + (p["y"] + 1.3) ** 2)
    return load(path).trials


@pytest.mark.parametrize(("sampler", "fingerprint"), [
    ("{type: gp, seed: 0}", "gp:relative_params:0"),
    ("{type: cmaes, seed: 0}", "cmawm:generation"),
])
def test_two_workers_of_a_seeded_study_propose_different_trials(tmp_path, sampler, fingerprint):
    # Seeded once per process, both would draw the same random startup trials.
    trials = two_workers(study(tmp_path, sampler, n_trials=12), rounds=6)
    assert len({(t.params["x"], t.params["y"]) for t in trials}) == 12
    assert fingerprint in trials[-1].system_attrs  # the sampler itself ran, past its startup


@pytest.mark.parametrize(("space", "picked", "said"), [
    (NUMERIC, "GPSampler",
     "hpo: sampler auto: GP for trials 0-249, TPE after (the search space is all numeric)"),
    # A single choice is a fixed value (as `hpo refine` writes them): still all numeric.
    (NUMERIC + "  k: {type: categorical, choices: [a]}\n"
     "  m: {type: float, low: 0.0, high: 1.0, when: {k: [a]}}\n", "GPSampler",
     "hpo: sampler auto: GP for trials 0-249, TPE after (the search space is all numeric)"),
    (NUMERIC + "  k: {type: categorical, choices: [a, b]}\n", "TPESampler",
     "hpo: sampler auto: TPE (search_space.k is categorical)"),
    (NUMERIC + "  k: {type: categorical, choices: [a, b]}\n"
     "  m: {type: float, low: 0.0, high: 1.0, when: {k: [b]}}\n", "TPESampler",
     "hpo: sampler auto: TPE (search_space.k is categorical, m conditional)"),
], ids=["numeric", "single-choice", "categorical", "conditional"])
def test_auto_picks_gp_for_numbers_and_tpe_otherwise(tmp_path, space, picked, said):
    path = study(tmp_path, "{type: auto, seed: 0}", n_trials=3, space=space)
    result = run(path)
    assert result.output.splitlines()[0] == said
    assert result.output.count("sampler auto:") == 1  # once a worker, not once a trial
    assert [t.system_attrs[AUTO_SAMPLER_ATTR] for t in load(path).trials] == [picked] * 3


class _Recorder(optuna.samplers.RandomSampler):
    """A random sampler that notes the trials it was asked to sample."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.numbers: list[int] = []

    def before_trial(self, study, trial) -> None:
        self.numbers.append(trial.number)


def test_auto_switches_from_gp_to_tpe_at_trial_250(caplog):
    gp, tpe = _Recorder(), _Recorder()
    auto = AutoSampler(gp, tpe, "the search space is all numeric")
    study = optuna.create_study()
    numbers = [0, 1, AUTO_GP_TRIALS - 1, AUTO_GP_TRIALS, AUTO_GP_TRIALS + 1]
    picked = []
    for number in numbers:
        trial = study._storage.get_trial(study.ask()._trial_id)
        trial.number = number  # as if the study had run that many trials
        with caplog.at_level(logging.INFO, logger="hpo"):
            auto.before_trial(study, trial)
        picked.append(study._storage.get_trial(trial._trial_id).system_attrs[AUTO_SAMPLER_ATTR])
    assert (gp.numbers, tpe.numbers) == (numbers[:3], numbers[3:])
    assert picked == ["GPSampler"] * 3 + ["TPESampler"] * 2
    assert [r.getMessage() for r in caplog.records if r.name == "hpo"] == [
        "sampler auto: GP for trials 0-249, TPE after (the search space is all numeric)",
        "sampler auto: TPE from trial 250 on (GP slows down with more trials)",
    ]


# (sampler, search space, the one line `hpo validate` prints after "Error: <file>: ")
REFUSED = [
    ("{type: gp}", NUMERIC + "  k: {type: categorical, choices: [a, b]}\n"
     "  m: {type: float, low: 0.0, high: 1.0, when: {k: [b]}}\n",
     "search_space.m.when: the gp sampler cannot model conditional entries (Optuna draws them "
     "at random); use sampler type tpe or auto, or drop when:"),
    ("{type: cmaes}", NUMERIC + "  k: {type: categorical, choices: [a]}\n"
     "  m: {type: categorical, choices: [a, b], when: {k: [a]}}\n"
     "  n: {type: float, low: 0.0, high: 1.0, when: {m: [b]}}\n",
     "search_space.n.when: the cmaes sampler cannot model conditional entries (Optuna draws "
     "them at random); use sampler type tpe or auto, or drop when:\nError: {path}: "
     "search_space.m: the cmaes sampler cannot model categorical entries (Optuna draws choices "
     "['a', 'b'] at random); use sampler type gp, tpe or auto"),
    ("{type: cmaes}", NUMERIC + "  k: {type: categorical, choices: [a, b]}\n",
     "search_space.k: the cmaes sampler cannot model categorical entries (Optuna draws choices "
     "['a', 'b'] at random); use sampler type gp, tpe or auto"),
    ("{type: gp, multivariate: true}", NUMERIC,
     "sampler: multivariate is a TPE option; it needs type: tpe"),
    ("{type: auto, n_startup_trials: 5}", NUMERIC,
     "sampler: n_startup_trials is a TPE option; it needs type: tpe"),
]


@pytest.mark.parametrize(("sampler", "space", "line"), REFUSED,
                         ids=["gp-when", "cmaes-both", "cmaes-categorical", "gp-tpe-option",
                              "auto-tpe-option"])
def test_validate_refuses_what_a_sampler_cannot_serve_in_one_line(tmp_path, sampler, space,
                                                                  line):
    path = study(tmp_path, sampler, n_trials=5, space=space)
    result = cli("validate", path)
    assert result.exit_code == 1
    assert result.output == f"Error: {path}: {line.replace('{path}', str(path))}\n"


@pytest.mark.parametrize(("sampler", "space"), [
    ("{type: qmc}", NUMERIC + "  k: {type: categorical, choices: [a, b]}\n"
     "  m: {type: float, low: 0.0, high: 1.0, when: {k: [b]}}\n"),
    ("{type: gp}", NUMERIC + "  k: {type: categorical, choices: [a, b]}\n"),
    ("{type: cmaes}", NUMERIC + "  k: {type: categorical, choices: [a]}\n"
     "  m: {type: float, low: 0.0, high: 1.0, when: {k: [a]}}\n"),
], ids=["qmc-when", "gp-categorical", "cmaes-fixed-parent"])
def test_validate_accepts_what_a_sampler_serves(tmp_path, sampler, space):
    result = cli("validate", study(tmp_path, sampler, n_trials=5, space=space))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("sampler", ["gp", "cmaes", "qmc", "auto"])
def test_stages_take_the_new_samplers(tmp_path, sampler):
    path = write_study(tmp_path, f"""
        name: quad
        sampler: {{type: {sampler}, seed: 0}}
        objective: {{callable: "objective.py:objective"}}
        search_space:
          x: {{type: float, low: -5.0, high: 5.0}}
          y: {{type: float, low: -5.0, high: 5.0}}
        stages:
          - {{name: x, n_trials: 5, params: [x], fixed: {{y: 0.0}}}}
          - {{name: both, n_trials: 5}}
        """, objective=OBJECTIVE)
    result = cli("validate", path)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("sampler", "space", "line"), [
    ("{type: gp}", NUMERIC,
     "sampler.type: gp needs torch, which is not installed; install torch as the README says "
     "(pip install 'hpo[train]' after it), or use sampler type tpe"),
    ("{type: auto}", NUMERIC,
     "sampler.type: auto runs GP on this all-numeric space, which needs torch, which is not "
     "installed; install torch as the README says (pip install 'hpo[train]' after it), or use "
     "sampler type tpe"),
], ids=["gp", "auto"])
def test_gp_without_torch_is_one_line_at_validate_and_run(tmp_path, monkeypatch, sampler,
                                                          space, line):
    monkeypatch.setitem(sys.modules, "torch", None)  # how Python marks a module not importable
    path = study(tmp_path, sampler, n_trials=5, space=space)
    for command in ("validate", "run"):
        result = cli(command, path)
        assert result.exit_code == 1
        assert result.output == f"Error: {path}: {line}\n"
    assert not (tmp_path / "quad.db").exists()


def test_auto_without_torch_runs_tpe_where_it_would_anyway(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    path = study(tmp_path, "{type: auto}", n_trials=5,
                 space=NUMERIC + "  k: {type: categorical, choices: [a, b]}\n")
    assert cli("validate", path).exit_code == 0
