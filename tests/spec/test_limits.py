"""The built-in trainer's limits: every value it cannot take is refused when the file is read
(one line naming the file, the entry, the value and the range, nothing written), and the same
table bounds fixed values, edge warnings and refine."""

from __future__ import annotations

import json
import subprocess

import optuna
import pytest
import yaml

from hpo.report.edges import edge_warnings, limits_for
from hpo.spec import TRAINER_LIMITS, load_spec, parse_spec
from hpo.wisdom.refine import refine_space
from tests.conftest import HPO, cli, study_yaml, write_study

TRAINER = """
data: {dataset: iris}
model: {hidden: [8]}
train: {epochs: 1, batch_size: 32}
"""


def trainer_study(space: str, extra: str = "", n_trials: int | None = 2) -> str:
    return study_yaml("t", direction="maximize", metric="val_accuracy", n_trials=n_trials,
                      sampler="{type: random, seed: 0}", trainer=TRAINER, space=space,
                      extra=extra)


def written(folder) -> list[str]:
    """What a command left in the study's folder beyond the study file and objective.py."""
    return sorted(p.name for p in folder.iterdir() if p.name not in ("study.yaml",
                                                                     "objective.py"))


# (search_space entries, extra fields, the one problem line after "<file>: ")
REFUSED = [
    ("batch_size: {type: categorical, choices: [-16, 32]}", "",
     "search_space.batch_size.choices: -16 is outside what the trainer takes "
     "(batch_size >= 1, an integer); drop that choice"),
    ("batch_size: {type: int, low: -8, high: 8}", "",
     "search_space.batch_size.low: -8 is outside what the trainer takes (batch_size >= 1, an "
     "integer); keep low and high inside it"),
    ("batch_size: {type: float, low: 16, high: 64}", "",
     "search_space.batch_size.type: a float range draws fractions, and the trainer takes "
     "batch_size >= 1, an integer; use type: int"),
    ("lr: {type: float, low: -0.1, high: 0.1}", "",
     "search_space.lr.low: -0.1 is outside what the trainer takes (lr > 0); keep low and high "
     "inside it"),
    ("momentum: {type: float, low: 0.9, high: 1.5}", "",
     "search_space.momentum.high: 1.5 is outside what the trainer takes (0 <= momentum < 1, "
     "or null for the default); keep low and high inside it"),
    ("dropout: {type: categorical, choices: [0.5, 1.2]}", "",
     "search_space.dropout.choices: 1.2 is outside what the trainer takes (0 <= dropout < 1); "
     "drop that choice"),
    ("epochs: {type: int, low: 0, high: 3}", "",
     "search_space.epochs.low: 0 is outside what the trainer takes (epochs >= 1, an integer); "
     "keep low and high inside it"),
    ("weight_decay: {type: categorical, choices: [0.0, fast]}", "",
     "search_space.weight_decay.choices: 'fast' is not a number; the trainer takes "
     "weight_decay >= 0; drop that choice"),
    ("dropout: {type: float, low: 0.0, high: 0.5, limits: {high: 1.5}}", "",
     "search_space.dropout.limits.high: 1.5 is outside what the trainer takes "
     "(0 <= dropout < 1); a limit lies within it"),
    ("lr: {type: float, low: 1.0e-3, high: 0.1, log: true}",
     "enqueue: [{lr: 0.01, batch_size: 0}]",
     "enqueue.0.batch_size: 0 is outside what the trainer takes (batch_size >= 1, an integer); "
     "enqueue a value the trainer takes"),
]


@pytest.mark.parametrize(("space", "extra", "problem"), REFUSED)
def test_a_value_the_trainer_cannot_take_is_one_line_and_nothing_is_written(
        tmp_path, space, extra, problem):
    path = write_study(tmp_path, trainer_study(space, extra))
    for command in ("validate", "run"):
        result = cli(command, path)
        assert result.exit_code == 1
        assert result.output == f"Error: {path}: {problem}\n"
    assert written(tmp_path) == []


def test_a_stage_fixed_at_a_value_the_trainer_cannot_take(tmp_path):
    path = write_study(tmp_path, trainer_study("""
        lr: {type: float, low: 1.0e-3, high: 0.1, log: true}
        dropout: {type: float, low: 0.0, high: 0.5}
    """, extra="""
        stages:
          - {name: lr, n_trials: 5, params: [lr], fixed: {dropout: 1.0}}
          - {name: all, n_trials: 5}
    """, n_trials=None))
    result = cli("run", path)
    assert result.exit_code == 1
    assert result.output == (f"Error: {path}: stages.0.fixed.dropout: 1.0 is outside what the "
                             "trainer takes (0 <= dropout < 1); fix it at a value the trainer "
                             "takes\n")
    assert written(tmp_path) == []


def test_every_such_value_is_listed_at_once(tmp_path):
    path = write_study(tmp_path, trainer_study("""
        batch_size: {type: categorical, choices: [-16, 32, 16.0]}
        momentum: {type: float, low: -0.5, high: 1.5}
        optimizer: {type: categorical, choices: [sgd, adamm]}
    """))
    result = cli("validate", path)
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"Error: {path}: {line}" for line in [
        "search_space.batch_size.choices: -16 is outside what the trainer takes "
        "(batch_size >= 1, an integer); drop that choice",
        "search_space.batch_size.choices: 16.0 is not an integer; the trainer takes "
        "batch_size >= 1, an integer; drop that choice",
        "search_space.momentum.low: -0.5 is outside what the trainer takes (0 <= momentum < 1, "
        "or null for the default); keep low and high inside it",
        "search_space.momentum.high: 1.5 is outside what the trainer takes (0 <= momentum < 1, "
        "or null for the default); keep low and high inside it",
        "search_space.optimizer.choices: unknown optimizer 'adamm'; did you mean 'adam'? "
        "allowed: sgd, momentum, nesterov, adagrad, rmsprop, adadelta, adam, adamw, nadam, "
        "radam",
    ]]


def test_the_installed_command_refuses_before_writing(tmp_path):
    path = write_study(tmp_path, trainer_study(
        "batch_size: {type: categorical, choices: [-16, 32]}"))
    done = subprocess.run([HPO, "run", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == (f"Error: {path}: search_space.batch_size.choices: -16 is outside "
                           "what the trainer takes (batch_size >= 1, an integer); drop that "
                           "choice\n")
    assert written(tmp_path) == []


def test_values_at_the_exact_limits_run(tmp_path):
    path = write_study(tmp_path, trainer_study("""
        dropout: {type: categorical, choices: [0.0, 0.999]}
        momentum: {type: categorical, choices: [null, 0.0, 0.999]}
        batch_size: {type: int, low: 1, high: 2}
        lr_decay: {type: categorical, choices: [1.0]}
        weight_decay: {type: float, low: 0.0, high: 1.0e-4}
        lr: {type: float, low: 1.0e-3, high: 0.1, log: true, limits: {low: 0}}
        optimizer: {type: categorical, choices: [momentum]}
        hidden_units: {type: int, low: 1, high: 2}
        n_layers: {type: categorical, choices: [1]}
    """, extra="enqueue: [{batch_size: 1, dropout: 0.999, momentum: 0.999}]"))
    assert cli("validate", path).exit_code == 0
    result = cli("run", path, "-q", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "2 complete" in result.output


def test_a_callable_objectives_params_are_its_own(tmp_path):
    path = write_study(tmp_path, study_yaml(space="""
        batch_size: {type: int, low: -1, high: 1}
        dropout: {type: categorical, choices: [-16, 1.5]}
        lr: {type: float, low: -0.1, high: 0.1}
    """, n_trials=2, extra="enqueue: [{batch_size: -1, dropout: 1.5, lr: -0.1}]"),
        objective="def objective(trial):\n    return trial.params['lr']\n")
    assert cli("validate", path).exit_code == 0
    result = cli("enqueue", path, "batch_size=-1", "dropout=-16")
    assert result.exit_code == 0, result.output
    assert cli("run", path, "-q").exit_code == 0


def test_hpo_enqueue_refuses_a_value_the_trainer_cannot_take(tmp_path):
    path = write_study(tmp_path, trainer_study("""
        batch_size: {type: int, low: 1, high: 64}
        dropout: {type: float, low: 0.0, high: 0.999}
    """))
    result = cli("enqueue", path, "batch_size=0")
    assert result.exit_code == 1
    assert result.output == ("Error: enqueue: batch_size: 0 is outside what the trainer takes "
                             "(batch_size >= 1, an integer); give a value the trainer takes\n")
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"number": 0, "value": 0.9, "params": {"dropout": 1.0}}))
    result = cli("enqueue", path, "--from", best)
    assert result.exit_code == 1
    assert result.output == (f"Error: --from {best}: dropout: 1.0 is outside what the trainer "
                             "takes (0 <= dropout < 1); give a value the trainer takes\n")
    assert written(tmp_path) == ["best.json"]


@pytest.mark.parametrize(("param", "message"), [
    ("batch_size=0", "--param batch_size=0: 0 is outside what the trainer takes "
                     "(batch_size >= 1, an integer); give a value the trainer takes"),
    ("momentum=1.5", "--param momentum=1.5: 1.5 is outside what the trainer takes "
                     "(0 <= momentum < 1, or null for the default); give a value the trainer "
                     "takes"),
    ("lr=-1", "--param lr=-1: -1 is outside what the trainer takes (lr > 0); give a value the "
              "trainer takes"),
    ("batch_norm=2", "--param batch_norm=2: 2 is not true or false; the trainer takes "
                     "batch_norm: true or false"),
])
def test_a_param_override_is_checked_against_the_same_limits(tmp_path, param, message):
    path = write_study(tmp_path, trainer_study("lr: {type: float, low: 1.0e-3, high: 0.1}"))
    for command in ("check", "lr-find"):
        result = cli(command, path, "--param", param)
        assert result.exit_code == 1
        assert result.output == f"Error: {message}\n"
    assert written(tmp_path) == []


@pytest.mark.parametrize(("section", "name", "refused", "at_limit"), [
    ("train", "batch_size", "0", "1"),
    ("train", "epochs", "0", "1"),
    ("train", "lr", "0.0", "1.0e-9"),
    ("train", "momentum", "1.0", "0.0"),
    ("train", "weight_decay", "-1.0e-9", "0.0"),
    ("train", "lr_decay", "0.0", "1.0"),
    ("train", "grad_clip", "0.0", "1.0e-9"),
    ("train", "early_stop_patience", "0", "1"),
    ("model", "dropout", "1.0", "0.0"),
])
def test_a_fixed_value_and_a_searched_one_obey_the_same_limit(tmp_path, section, name,
                                                              refused, at_limit):
    def validates(trainer: str, space: str) -> bool:
        body = study_yaml("t", direction="maximize", metric="val_accuracy", n_trials=2,
                          trainer=trainer, space=space)
        return cli("validate", write_study(tmp_path, body)).exit_code == 0

    for value, accepted in ((refused, False), (at_limit, True)):
        fixed = f"data: {{dataset: iris}}\n{section}: {{{name}: {value}}}"
        searched = f"{name}: {{type: categorical, choices: [{value}]}}"
        assert validates(fixed, "activation: {type: categorical, choices: [relu]}"
                         ) is accepted, (name, value)
        assert validates("data: {dataset: iris}", searched) is accepted, (name, value)
        assert TRAINER_LIMITS[name].allows(yaml.safe_load(value)) is accepted


def test_edge_warnings_and_refine_stop_where_validation_does(tmp_path):
    path = write_study(tmp_path, trainer_study("""
        lr: {type: float, low: 0.001, high: 0.1}
        dropout: {type: float, low: 0.5, high: 0.85}
        batch_size: {type: int, low: 16, high: 64, step: 16}
    """))
    spec = load_spec(path)
    study = optuna.create_study(direction="maximize")
    for i in range(10):  # the best: the lowest lr, the highest dropout, the smallest batch
        study.enqueue_trial({"lr": 0.001 + 0.011 * i, "dropout": 0.85 - 0.035 * i,
                             "batch_size": 16 * (1 + i // 3)})
    study.optimize(lambda t: -t.suggest_float("lr", 0.001, 0.1)
                   + 0 * t.suggest_float("dropout", 0.5, 0.85)
                   + 0 * t.suggest_int("batch_size", 16, 64, step=16), n_trials=10)
    limits = limits_for(spec, study)
    assert limits["dropout"] == TRAINER_LIMITS["dropout"].natural == (0, 0.9)
    widened = {w.param: w.widened_to for w in edge_warnings(study, limits)}
    # lr > 0: a linear range's low edge goes halfway to 0, never to it (or below).
    assert widened == {"lr": 0.0005, "dropout": 0.9, "batch_size": 1}
    refinement = refine_space(spec, study)
    assert refinement.space["lr"]["low"] == 0.0005
    assert refinement.space["dropout"]["high"] == 0.9
    # On batch_size's grid (16, 32, ...) 1 would round to 0: it stays at 16.
    assert refinement.space["batch_size"]["low"] == 16
    data = yaml.safe_load(path.read_text())
    parse_spec({**data, "search_space": refinement.space}, path)  # it validates
