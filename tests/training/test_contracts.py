"""The trainer's contracts: each name list defined once (`hpo.training.config`), the registries
and the spec built on it, one home for the defaults, and a run's stop as a field."""

from __future__ import annotations

import dataclasses
import math
from typing import get_args

import optuna
import pytest

from hpo.spec import DataSpec, ModelSpec, TrainSpec, load_spec
from hpo.spec import trainer as spec_trainer
from hpo.training import config
from hpo.training.data import NORMALIZERS, SHIPPED, DataConfig, load_data
from hpo.training.init import INITIALIZERS
from hpo.training.loop import TrainConfig, TrainResult, train
from hpo.training.model import ACTIVATIONS
from hpo.training.optim import OPTIMIZERS
from hpo.training.packed_optim import RULES
from hpo.worker.objective import TrainerObjective, trainer_config
from tests.conftest import study_yaml


@pytest.mark.parametrize(("registry", "names"), [
    (OPTIMIZERS, config.OptimizerName),
    (RULES, config.OptimizerName),
    (INITIALIZERS, config.InitializerName),
    (ACTIVATIONS, config.ActivationName),
    (NORMALIZERS, config.NormalizationName),
    (config.METRIC_DIRECTIONS, config.MetricName),
], ids=["optimizers", "rules", "initializers", "activations", "normalizers", "metrics"])
def test_each_registry_is_keyed_by_its_names(registry, names):
    assert tuple(registry) == get_args(names)


def test_every_dataset_but_the_synthetic_one_is_a_shipped_file():
    assert (*SHIPPED, "synthetic") == get_args(config.DatasetName)


@pytest.mark.parametrize(("section", "field", "names"), [
    (DataSpec, "dataset", config.DatasetName),
    (DataSpec, "normalize", config.NormalizationName),
    (ModelSpec, "activation", config.ActivationName),
    (ModelSpec, "initializer", config.InitializerName),
    (TrainSpec, "optimizer", config.OptimizerName),
    (TrainSpec, "lr_schedule", config.LrScheduleName),
    (TrainSpec, "device", config.DeviceName),
])
def test_the_spec_allows_exactly_the_trainers_names(section, field, names):
    allowed = {name for arg in get_args(section.model_fields[field].annotation)
               for name in (get_args(arg) or [arg]) if name is not type(None)}
    assert allowed == set(get_args(names))


def test_the_spec_tuples_are_the_trainers_names():
    assert spec_trainer.OPTIMIZERS == get_args(config.OptimizerName)
    assert spec_trainer.INITIALIZERS == get_args(config.InitializerName)
    assert spec_trainer.ACTIVATIONS == get_args(config.ActivationName)
    assert spec_trainer.DATASETS == get_args(config.DatasetName)
    assert spec_trainer.NORMALIZATIONS == get_args(config.NormalizationName)
    assert spec_trainer.LR_SCHEDULES == get_args(config.LrScheduleName)
    assert spec_trainer.TRAINER_METRICS == config.METRIC_DIRECTIONS


def _defaults(config_class: type) -> dict:
    return {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING
            else f.default for f in dataclasses.fields(config_class)}


def test_the_spec_takes_its_defaults_from_the_trainers_configs():
    data = _defaults(DataConfig)
    assert set(DataSpec.model_fields) == set(data)
    assert {name: f.default for name, f in DataSpec.model_fields.items()} == data
    train = _defaults(TrainConfig)
    for section in (ModelSpec, TrainSpec):
        for name, field in section.model_fields.items():
            if name != "pack":  # how many trials a worker trains at once: no run's setting
                assert field.default == train[name], name


def test_the_defaults_keep_their_values():
    # Stored studies' identities leave defaults out: a changed default changes a study.
    assert ModelSpec().model_dump() == {
        "hidden": [128, 128], "activation": "relu", "batch_norm": False, "dropout": 0.0,
        "initializer": "he_normal"}
    assert TrainSpec().model_dump() == {
        "epochs": 20, "batch_size": 64, "lr": 1e-3, "optimizer": "adam", "momentum": None,
        "weight_decay": 0.0, "lr_decay": None, "lr_schedule": "exponential",
        "lr_step_epochs": 10, "grad_clip": None, "early_stop_patience": None,
        "device": "auto", "threads": None, "seed": 0, "pack": "auto"}
    assert DataSpec(dataset="digits").model_dump() == {
        "dataset": "digits", "path": None, "label": None, "normalize": "standard",
        "val_fraction": 0.2, "seed": 0, "n_samples": 2000, "n_features": 20, "n_classes": 2}
    assert TrainConfig().divergence_factor == 3.0


def test_a_spec_default_is_never_shared_between_specs():
    first = ModelSpec()
    first.hidden.append(7)
    assert ModelSpec().hidden == [128, 128] == TrainConfig().hidden


STUDY = study_yaml("contracts", n_trials=1, direction="maximize", metric="val_accuracy",
                   trainer="data: {dataset: iris}\ntrain: {epochs: 1, threads: 1}",
                   space="lr: {type: float, low: 0.001, high: 0.1, log: true}")


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("study") / "study.yaml"
    path.write_text(STUDY)
    return load_spec(path)


def test_a_trials_config_is_the_default_config_with_the_files_settings(spec):
    built = trainer_config(spec, {"lr": 0.05})
    assert built == TrainConfig(epochs=1, threads=1, lr=0.05, metric="val_accuracy",
                                divergence_factor=3.0)


def test_the_data_reaches_the_trainer_as_a_plain_config(spec, tmp_path):
    assert DataConfig(**spec.objective.data.model_dump()) == DataConfig(dataset="iris")
    assert load_data(DataConfig(dataset="iris"), tmp_path).n_classes == 3


class _Stopping:
    def report(self, epoch, metrics):
        pass

    def should_stop(self):
        return True


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    return load_data(DataConfig(dataset="iris"), tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize(("changes", "reporter", "stop"), [
    ({}, None, "done"),
    ({"lr": 1e6, "optimizer": "sgd"}, None, "diverged"),
    ({}, _Stopping(), "reporter"),
    ({"early_stop_patience": 1, "lr": 0.0}, None, "early"),  # the same val_loss every epoch
], ids=["done", "diverged", "reporter", "early"])
def test_every_stop_is_a_field(iris, changes, reporter, stop):
    result = train(TrainConfig(**{"hidden": [8], "epochs": 4, "threads": 1, **changes}), iris,
                   reporter)
    assert stop in get_args(config.Stop)
    assert result.stop == stop
    assert result.diverged is (stop == "diverged")
    assert (result.stop_reason is None) is (stop == "done")


def _result(stop, reason):
    return TrainResult(history={"train_loss": [1.0], "val_loss": [1.0], "val_accuracy": [0.5]},
                       best_value=0.5, epochs_run=1, stop=stop, stop_reason=reason,
                       initial_loss=1.1, expected_initial_loss=math.log(3), n_params=10,
                       device="cpu", threads=1, train_seconds=0.1)


@pytest.mark.parametrize(("stop", "pruned"), [
    ("done", False), ("early", False), ("reporter", True), ("diverged", True),
])
def test_the_objective_prunes_by_the_stop_not_its_wording(spec, stop, pruned):
    objective = TrainerObjective(spec)
    trial = optuna.create_study(direction="maximize").ask()
    result = _result(stop, None if stop == "done" else "reworded, any way at all")
    if not pruned:
        assert objective.finish(trial, result) == 0.5
        return
    with pytest.raises(optuna.TrialPruned) as raised:
        objective.finish(trial, result)
    # The divergence rule's reason travels with the prune; the reporter's stop is the
    # study's pruner's to name (none here).
    assert str(raised.value) == ("reworded, any way at all" if stop == "diverged" else "")
