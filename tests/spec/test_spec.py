from __future__ import annotations

import textwrap

import pytest
import yaml

from hpo.errors import SpecError
from hpo.spec import load_spec
from tests.conftest import assert_one_line, cli, study_yaml

GOOD = study_yaml(direction="minimize", n_trials=10, sampler="{type: tpe, seed: 0}",
                  space="x: {type: float, low: -5, high: 5}")

HEAD = """
name: quad
n_trials: 10
objective: {callable: "objective.py:objective"}
"""

# (study file, fragments the one-line error must contain)
BAD_FILES = [
    ("name: quad\nn_trials: [1\n", ["YAML syntax error at line 3", "flow sequence at line 2)"]),
    ("name: quad\n  n_trials: 5\n", ["YAML syntax error at line 2"]),
    ("- just\n- a list\n", ["must be a YAML mapping"]),
    (HEAD + "search_space:\n  lr: {type: float, low: 1.0, high: 0.1}\n",
     ["search_space.lr", "low must be less than high", "low=1.0, high=0.1"]),
    (HEAD + "search_space:\n  lr: {type: float, low: 0.5, high: 0.5}\n",
     ["search_space.lr", "low must be less than high"]),
    (HEAD + "search_space:\n  lr: {type: float, low: 0.0, high: 1.0, log: true}\n",
     ["search_space.lr", "log scale needs low > 0", "low=0.0"]),
    (HEAD + "search_space:\n  n: {type: int, low: 5, high: 1}\n",
     ["search_space.n", "low must be less than high"]),
    (HEAD + "search_space:\n  opt: {type: categorical, choices: []}\n",
     ["search_space.opt.choices", "choices is empty"]),
    (HEAD + "search_space:\n  opt: {type: categorical, choices: [sgd, sgd]}\n",
     ["search_space.opt.choices", "'sgd' more than once"]),
    (HEAD + "search_space:\n  lr: {type: flaot, low: 0.1, high: 1.0}\n",
     ["search_space.lr", "unknown type 'flaot'", "did you mean 'float'", "categorical"]),
    (HEAD + "search_space:\n  lr: {low: 0.1, high: 1.0}\n",
     ["search_space.lr", "missing type"]),
    (HEAD + "search_space:\n  lr: {type: float, low: 0.1, hihg: 1.0}\n",
     ["search_space.lr", "unknown key 'hihg'", "did you mean 'high'"]),
    (HEAD + "samplr: {type: tpe}\n", ["unknown key 'samplr'", "did you mean 'sampler'"]),
    (HEAD + "sampler: {type: bayes}\n",
     ["sampler.type", "'tpe', 'random', 'grid', 'gp', 'cmaes', 'qmc' or 'auto'", "'bayes'"]),
    (HEAD + "sampler: {type: random, n_startup_trials: 5}\n",
     ["sampler", "n_startup_trials is a TPE option"]),
    (HEAD + "pruner: {early: {type: medain}}\n",
     ["pruner.early.type", "'median'", "'medain'"]),
    (HEAD + "pruner: {early: {type: median, percentile: 25}}\n",
     ["pruner.early", "percentile does not apply to median"]),
    (HEAD + "pruner: {divergence: {factor: 0.5}}\n",
     ["pruner.divergence.factor", "greater than 1"]),
    ("name: quad\nn_trials: 0\nobjective: {callable: 'objective.py:objective'}\n",
     ["n_trials", "greater than or equal to 1", "got 0"]),
    ("name: quad\nobjective: {callable: 'objective.py:objective'}\n",
     ["n_trials", "set n_trials (or a timeout)"]),
    ("name: quad\nn_trials: 5\n", ["objective", "Field required"]),
    ("name: quad\nn_trials: 5\nobjective: {callable: 'objective.py'}\n",
     ["objective.callable", "should match pattern", "'objective.py'"]),
    (HEAD + "direction: upward\n", ["direction", "'minimize' or 'maximize'", "'upward'"]),
    (HEAD + "sampler: {type: grid}\nsearch_space:\n  lr: {type: float, low: 0.1, high: 1.0}\n",
     ["search_space.lr", "grid sampler needs finite values", "add a step"]),
    (HEAD + "search_space:\n  optimizer: {type: categorical, choices: [sgd, adam]}\n"
     "  momentum: {type: float, low: 0.5, high: 0.9, when: {optimiser: [sgd]}}\n",
     ["search_space.momentum.when.optimiser", "not in search_space",
      "did you mean 'optimizer'"]),
    (HEAD + "search_space:\n  opt: {type: categorical, choices: [sgd, adam]}\n"
     "  momentum: {type: float, low: 0.5, high: 0.9, when: {opt: [rmsprop]}}\n",
     ["search_space.momentum.when.opt", "'rmsprop' is not one of 'opt''s choices"]),
    (HEAD + "search_space:\n  lr: {type: float, low: 0.1, high: 0.9}\n"
     "  momentum: {type: float, low: 0.5, high: 0.9, when: {lr: [0.1]}}\n",
     ["search_space.momentum.when.lr", "must be a categorical entry"]),
    (HEAD + "sampler: {type: grid}\nsearch_space:\n  opt: {type: categorical, choices: [a, b]}\n"
     "  m: {type: int, low: 1, high: 3, when: {opt: [a]}}\n",
     ["search_space.m.when", "grid sampler cannot run conditional entries"]),
    (HEAD + "search_space:\n  lr: {type: float, low: 0.1, high: 1.0, log: true, step: 0.1}\n",
     ["search_space.lr", "log and step cannot be used together"]),
    (HEAD + "timeout: -5\n", ["timeout", "greater than 0"]),
]


@pytest.mark.parametrize(("text", "fragments"), BAD_FILES)
def test_bad_study_file_is_one_clear_line(tmp_path, text, fragments):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as raised:
        load_spec(path)
    assert_one_line(str(raised.value), f"{path}: ", fragments)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="no such study file"):
        load_spec(tmp_path / "absent.yaml")


def test_good_file_fills_defaults(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(GOOD)
    spec = load_spec(path)
    assert spec.pruner.divergence.factor == 3.0
    assert spec.pruner.early is None
    assert spec.source == path.absolute()
    assert spec.search_space["x"].log is False


def test_divergence_can_be_turned_off(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(GOOD + "pruner: {divergence: false, early: {type: median}}\n")
    spec = load_spec(path)
    assert spec.pruner.divergence is False
    assert spec.normalized()["pruner"]["divergence"] is False


def test_when_accepts_a_single_value(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(HEAD + "search_space:\n  opt: {type: categorical, choices: [sgd, adam]}\n"
                    "  momentum: {type: float, low: 0.5, high: 0.9, when: {opt: sgd}}\n")
    assert load_spec(path).search_space["momentum"].when == {"opt": ["sgd"]}


def test_validate_prints_normalized_spec_and_masks_password(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(GOOD + "storage: postgresql+psycopg://hpo:s3cret@db/hpo\n")
    (tmp_path / "objective.py").write_text("def objective(trial):\n    return 0.0\n")
    result = cli("validate", path)
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.output)
    assert data["pruner"]["divergence"] == {"factor": 3.0}
    assert data["sampler"] == {"type": "tpe", "seed": 0}
    assert "s3cret" not in result.output
    assert data["storage"] == "postgresql+psycopg://hpo:***@db/hpo"


def test_validate_bad_file_exit_1_one_line(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(GOOD).replace("high: 5", "high: -6"))
    result = cli("validate", path)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert result.output.count("\n") == 1
    assert "search_space.x: low must be less than high" in result.output
    assert "Traceback" not in result.output
