"""Packed training: each member trains as it would alone, and leaves the pack on its own."""

from __future__ import annotations

import pytest

from hpo.training.data import DataConfig, load_data
from hpo.training.loop import TrainConfig, train
from hpo.training.pack import Pack, Run, train_packed

# One configuration per optimizer, each differing from the next in what a pack lets differ.
MEMBERS = [
    {"optimizer": "sgd", "lr": 0.05, "dropout": 0.2, "grad_clip": 0.5},
    {"optimizer": "momentum", "lr": 0.01, "momentum": 0.8, "weight_decay": 1e-3, "seed": 1},
    {"optimizer": "nesterov", "lr": 0.01, "lr_decay": 0.8, "seed": 2},
    {"optimizer": "adagrad", "lr": 0.02, "initializer": "xavier_uniform"},
    {"optimizer": "rmsprop", "lr": 0.001, "momentum": 0.5, "dropout": 0.4, "seed": 4},
    {"optimizer": "adadelta", "lr": 1.0, "lr_schedule": "cosine"},
    {"optimizer": "adam", "lr": 0.002, "weight_decay": 1e-4, "seed": 6},
    {"optimizer": "adamw", "lr": 0.002, "weight_decay": 1e-2, "lr_schedule": "step",
     "lr_decay": 0.5, "lr_step_epochs": 1},
    {"optimizer": "nadam", "lr": 0.002, "dropout": 0.1, "epochs": 2},
    {"optimizer": "radam", "lr": 0.005, "initializer": "lecun_normal", "seed": 9,
     "early_stop_patience": 1},
]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return load_data(DataConfig(dataset="digits"), tmp_path_factory.mktemp("data"))


def config(**overrides) -> TrainConfig:
    base = {"hidden": [64, 32], "epochs": 3, "batch_size": 64, "threads": 1}
    return TrainConfig(**{**base, **overrides})


def assert_same_run(packed, alone, rel: float = 5e-3) -> None:
    # The same batches, initial weights and dropout masks: equal up to float rounding.
    assert packed.epochs_run == alone.epochs_run
    assert packed.stop_reason == alone.stop_reason
    assert packed.best_value == pytest.approx(alone.best_value, abs=max(rel, 0.005))
    assert packed.initial_loss == pytest.approx(alone.initial_loss, rel=1e-5)
    for name in ("train_loss", "val_loss"):
        assert packed.history[name] == pytest.approx(alone.history[name], rel=rel, abs=rel,
                                                     nan_ok=True)
    # An accuracy moves by whole examples: rounding may flip one or two of the 360.
    assert packed.history["val_accuracy"] == pytest.approx(alone.history["val_accuracy"],
                                                           abs=max(rel, 0.006), nan_ok=True)
    assert packed.n_params == alone.n_params


@pytest.mark.parametrize("batch_norm", [False, True])
def test_each_packed_member_trains_as_it_would_alone(digits, batch_norm):
    configs = [config(batch_norm=batch_norm, **member) for member in MEMBERS]
    for packed, alone, c in zip(train_packed(configs, digits),
                                [train(c, digits) for c in configs], configs, strict=True):
        # Adagrad's first steps move each weight by about lr x sign(gradient), so a gradient
        # that float rounding makes 1e-12 rather than 0 moves a weight by lr: its run drifts
        # from the one alone by more than rounding, though not in what it learns.
        assert_same_run(packed, alone, rel=2e-2 if c.optimizer == "adagrad" else 5e-3)
        # ... and each learned: chance is 0.1
        assert packed.best_value > 0.3
        assert packed.history["train_loss"][-1] < packed.history["train_loss"][0]


def test_members_of_other_shapes_and_batch_sizes_train_side_by_side(digits):
    configs = [config(hidden=[32]), config(batch_size=32), config(batch_size=100),
               config(hidden=[64, 32], activation="tanh"), config(hidden=[]),
               config(batch_size=5000, batch_norm=True), config(divergence_factor=None)]
    for packed, alone in zip(train_packed(configs, digits),
                             [train(c, digits) for c in configs], strict=True):
        assert_same_run(packed, alone)


def test_a_diverging_member_stops_alone_and_the_others_train_on_unchanged(digits):
    # SGD at lr 50 diverges within its first epoch; its pack mates must not notice.
    configs = [config(optimizer="sgd", lr=50.0), config(), config(optimizer="sgd", lr=0.05)]
    packed = train_packed(configs, digits)
    assert packed[0].diverged and packed[0].epochs_run == 1
    assert packed[0].stop_reason.startswith("diverged: ")
    for result, alone in zip(packed, [train(c, digits) for c in configs], strict=True):
        assert_same_run(result, alone)
    assert not packed[1].diverged and packed[1].epochs_run == 3


def test_a_spike_that_recovers_is_not_stopped_in_a_pack(digits):
    # Adam at a high learning rate spikes in its first steps and recovers: the rule, fed
    # each member's own losses, must not fire (nor fire on a neighbour's spike).
    configs = [config(lr=0.05), config(lr=0.001)]
    packed = train_packed(configs, digits)
    assert not any(r.diverged for r in packed)
    assert all(r.epochs_run == 3 for r in packed)


class StopAfter:
    """A reporter that stops its run after `epochs` reports (as a pruner would)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        self.reports: list[tuple[int, float]] = []

    def report(self, epoch, metrics):
        self.reports.append((epoch, metrics["val_accuracy"]))

    def should_stop(self):
        return len(self.reports) >= self.epochs


def test_a_stopped_member_leaves_and_each_reports_its_own_curve(digits):
    configs = [config(seed=1), config(seed=2), config(seed=3, optimizer="sgd", lr=0.05)]
    reporters = [StopAfter(99), StopAfter(1), StopAfter(99)]
    packed = train_packed(configs, digits, reporters)
    assert packed[1].epochs_run == 1
    assert packed[1].stop_reason == "stopped by the reporter after epoch 0"
    assert [e for e, _ in reporters[0].reports] == [0, 1, 2]
    for reporter, result in zip(reporters, packed, strict=True):
        assert [acc for _, acc in reporter.reports] == result.history["val_accuracy"]
    assert_same_run(packed[2], train(configs[2], digits))


def test_a_run_added_later_joins_at_an_epoch_start_and_trains_as_alone(digits):
    pack = Pack(digits, size=3, threads=1)
    first, later = Run(config(), None, "first"), Run(config(seed=7, lr=0.01), None, "later")
    pack.add(first)
    for _ in range(3):  # partway through the first epoch
        pack.step()
    pack.add(later)
    assert len(pack.groups) == 2  # mid-epoch: it cannot share the first run's batches
    ended = []
    while len(pack):
        ended += [run.trial for run in pack.step()]
    assert sorted(ended) == ["first", "later"]
    assert_same_run(first.result, train(first.config, digits))
    assert_same_run(later.result, train(later.config, digits))


def test_a_run_that_ends_frees_its_place_for_a_new_one_in_step(digits):
    pack = Pack(digits, size=2, threads=1)
    short, long = Run(config(epochs=1), None, "short"), Run(config(epochs=3), None, "long")
    pack.add(short)
    pack.add(long)
    assert len(pack.groups) == 1 and not pack.has_room
    while not pack.has_room:
        pack.step()
    assert short.result is not None and long.result is None
    newcomer = Run(config(seed=3), None, "new")
    pack.add(newcomer)  # at the epoch start the short run left at: the same group
    assert len(pack.groups) == 1 and len(pack) == 2
    while len(pack):
        pack.step()
    assert_same_run(newcomer.result, train(newcomer.config, digits))
    assert_same_run(long.result, train(long.config, digits))
