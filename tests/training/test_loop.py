from __future__ import annotations

import math
from typing import get_args

import pytest

from hpo.training.config import LrScheduleName, OptimizerName
from hpo.training.data import DataConfig, load_data
from hpo.training.loop import TrainConfig, pick_device, train

# Learning rates at which each optimizer learns digits in a few epochs.
GOOD_LR = {
    "sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05, "rmsprop": 0.001,
    "adadelta": 1.0, "adam": 0.002, "adamw": 0.002, "nadam": 0.002, "radam": 0.01,
}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return load_data(DataConfig(dataset="digits"), tmp_path_factory.mktemp("data"))


def config(**overrides):
    base = {"hidden": [64], "epochs": 3, "batch_size": 32, "threads": 1}
    return TrainConfig(**{**base, **overrides})


@pytest.mark.parametrize("optimizer", get_args(OptimizerName))
def test_each_optimizer_learns_well_above_chance(digits, optimizer):
    result = train(config(optimizer=optimizer, lr=GOOD_LR[optimizer]), digits)
    assert result.best_value > 0.8  # chance is 0.1
    assert result.history["train_loss"][-1] < result.history["train_loss"][0]


def test_sgd_with_lr_50_diverges_within_the_first_epoch(digits):
    result = train(config(optimizer="sgd", lr=50.0, epochs=5), digits)
    assert result.diverged
    assert result.epochs_run == 1
    assert result.stop_reason.startswith("diverged: ")
    step = int(result.stop_reason.rsplit(" ", 1)[1])
    assert step < math.ceil(len(digits.x_train) / 32)


def test_divergence_off_runs_every_epoch(digits):
    result = train(config(optimizer="sgd", lr=50.0, epochs=2, divergence_factor=None), digits)
    assert not result.diverged and result.epochs_run == 2


def test_same_parameters_and_seed_give_the_same_metric(digits):
    first = train(config(dropout=0.3, seed=5), digits)
    second = train(config(dropout=0.3, seed=5), digits)
    other = train(config(dropout=0.3, seed=6), digits)
    assert first.history == second.history
    assert first.history != other.history


def test_initial_loss_is_near_ln_c(digits):
    result = train(config(initializer="xavier_uniform", epochs=1), digits)
    assert result.expected_initial_loss == pytest.approx(math.log(10))
    assert abs(result.initial_loss - math.log(10)) < 0.5


def test_early_stop_on_validation_loss(digits):
    # Adam at a high rate fits digits within a few epochs; validation loss then stalls.
    result = train(config(lr=0.01, epochs=40, early_stop_patience=2, hidden=[256]), digits)
    assert result.epochs_run < 40
    assert result.stop_reason == "early stop: val_loss did not improve for 2 epochs"


def test_reporter_is_told_every_epoch_and_can_stop(digits):
    class Stopper:
        def __init__(self):
            self.epochs = []

        def report(self, epoch, metrics):
            self.epochs.append((epoch, sorted(metrics)))

        def should_stop(self):
            return len(self.epochs) == 2

    stopper = Stopper()
    result = train(config(epochs=5), digits, stopper)
    assert stopper.epochs == [(0, ["train_loss", "val_accuracy", "val_loss"])] * 1 + [
        (1, ["train_loss", "val_accuracy", "val_loss"])]
    assert result.epochs_run == 2
    assert result.stop_reason == "stopped by the reporter after epoch 1"


@pytest.mark.parametrize("schedule", get_args(LrScheduleName))
def test_schedules_and_clipping_train(digits, schedule):
    result = train(config(lr=0.05, optimizer="momentum", lr_decay=0.9, lr_schedule=schedule,
                          lr_step_epochs=1, grad_clip=1.0, batch_norm=True), digits)
    assert result.best_value > 0.8


def test_batch_norm_with_a_trailing_batch_of_one(digits):
    # 1437 training rows with batch 1436 leave one row over: it must not break batch norm
    # (torch refuses to train on a batch of one; its statistics of one row are NaN). Two
    # epochs, so that a run the row broke, diverged and stopped in the first, shows.
    result = train(config(batch_norm=True, batch_size=len(digits.x_train) - 1, epochs=2),
                   digits)
    assert not result.diverged and result.epochs_run == 2
    assert all(math.isfinite(v) for values in result.history.values() for v in values)


def test_auto_device_is_cpu_without_cuda():
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected


def test_adam_spikes_that_recover_are_not_divergence(monkeypatch):
    # The case: a 512x512 MLP without batch norm, Adam at lr 1e-2, batch 16. The loss
    # of step 1 is 5-25x the first; the raw 3x rule pruned every such trial at step 1.
    from hpo.training import loop
    from hpo.training.divergence import DivergenceMonitor

    data = load_data(DataConfig(dataset="synthetic", n_features=20), None)
    spiky = config(hidden=[512, 512], batch_size=16, lr=1e-2, optimizer="adam", epochs=1,
                   threads=2, seed=1)
    result = train(spiky, data)
    assert not result.diverged and result.epochs_run == 1
    assert result.best_value > 0.85
    monkeypatch.setattr(loop, "training_monitor", lambda factor: DivergenceMonitor(factor))
    raw = train(spiky, data)
    assert raw.diverged and raw.stop_reason.endswith("at step 1")
