"""Starter study files for `hpo init`: commented, valid, and runnable as written."""

from __future__ import annotations

import re
from pathlib import Path

from hpo.errors import HpoError

TRAINER_STUDY = """\
# A study file for hpo (every key: the README's "The study file").
#   hpo check {path}      babysitting checks of the setup, in seconds
#   hpo run {path}        run the search (results go to {db} beside this file)
#   hpo status {path}     counts, best trial, top 5;  hpo dashboard {path} to browse
name: {name}                    # the Optuna study's name
direction: maximize
metric: val_accuracy            # val_accuracy (maximize) | val_loss | train_loss (minimize)
n_trials: 30                    # finished trials for the whole study, shared by all workers
sampler: {{type: tpe, seed: 0}}   # tpe | random | grid | gp | cmaes | qmc | auto
pruner:
  divergence: {{factor: 3.0}}     # stop a trial whose cost exceeds 3x its first cost (or NaN)
  early: {{type: median, n_startup_trials: 5, n_warmup_steps: 3}}
objective:
  trainer: mlp                  # the built-in PyTorch MLP trainer
  data: {{dataset: digits}}       # or {{path: data.csv, label: target}} or {{path: arrays.npz}}
  model: {{hidden: [128, 128], batch_norm: true, initializer: he_normal}}
  train: {{epochs: 10, batch_size: 64, optimizer: adam, lr_decay: 0.95}}
search_space:                   # a searched value overrides the fixed one above
  lr:         {{type: float, low: 1.0e-4, high: 1.0e-1, log: true}}
  dropout:    {{type: float, low: 0.0, high: 0.5, limits: {{low: 0.0}}}}
  batch_size: {{type: categorical, choices: [32, 64, 128]}}
  optimizer:  {{type: categorical, choices: [adam, momentum]}}
  momentum:   {{type: float, low: 0.5, high: 0.99, when: {{optimizer: [momentum]}}}}
"""

CALLABLE_STUDY = """\
# A study file for hpo (every key: the README's "The study file").
#   hpo run {path}        run the search (results go to {db} beside this file)
#   hpo status {path}     counts, best trial, top 5;  hpo dashboard {path} to browse
name: {name}                    # the Optuna study's name
direction: minimize             # what your function returns: a loss, so lower is better
metric: val_loss
n_trials: 30                    # finished trials for the whole study, shared by all workers
sampler: {{type: tpe, seed: 0}}   # tpe | random | grid | gp | cmaes | qmc | auto
pruner:
  divergence: {{factor: 3.0}}     # stop a trial whose reported cost exceeds 3x its first
objective:
  callable: "{callable}"        # path relative to this file, or package.module:function
search_space:                   # your function reads these from trial.params
  lr:        {{type: float, low: 1.0e-5, high: 1.0, log: true}}
  layers:    {{type: int, low: 1, high: 4}}
  optimizer: {{type: categorical, choices: [sgd, adam]}}
  momentum:  {{type: float, low: 0.5, high: 0.99, when: {{optimizer: [sgd]}}}}
"""

OBJECTIVE_STUB = '''\
"""The objective hpo calls once a trial: read the trial's values, train, return the metric.

This stub runs as it is, on a made-up loss, so `hpo run` works before you write your own.
"""

import math

import optuna


def {function}(trial: optuna.Trial) -> float:
    lr = trial.params["lr"]
    layers = trial.params["layers"]
    momentum = trial.params.get("momentum", 0.0)  # searched only when optimizer is sgd

    # Replace this with your training: build the model from the values above, train it, and
    # report the validation loss each epoch, so that early pruning and the 3x divergence
    # rule can stop a bad trial early.
    loss = 2.3
    for epoch in range(10):
        loss *= 0.9 - 0.05 * layers * math.exp(-((math.log10(lr) + 2.5) ** 2)) - 0.1 * momentum
        trial.report(loss, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return loss
'''


def study_name(path: Path) -> str:
    """The study name for a new file: its stem, kept to characters every tool accepts."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", path.stem).strip("-.") or "study"


def write_starter(path: Path, objective: str | None, force: bool) -> list[Path]:
    """Write a starter study file at `path` (and, for `objective` FILE.py:FUNCTION, a stub
    objective file beside it when none is there); returns the files written."""
    if path.exists() and not force:
        raise HpoError(f"{path}: the file exists; choose another path or add --force")
    if path.suffix not in (".yaml", ".yml"):
        raise HpoError(f"{path}: a study file ends in .yaml or .yml")
    name = study_name(path)
    fields = {"path": path, "name": name, "db": f"{name}.db"}
    written = []
    if objective is None:
        text = TRAINER_STUDY.format(**fields)
    else:
        target, _, function = objective.rpartition(":")
        if not target or not re.fullmatch(r"[A-Za-z_]\w*", function):
            raise HpoError(f"--objective {objective!r}: write FILE.py:FUNCTION (a path relative "
                           "to the study file) or package.module:function")
        text = CALLABLE_STUDY.format(**fields, callable=objective)
        stub = path.parent / target
        if target.endswith(".py") and not stub.exists():
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text(OBJECTIVE_STUB.format(function=function))
            written.append(stub)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return [path, *written]
