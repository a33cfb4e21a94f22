from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from hpo.errors import SpecError
from hpo.spec import load_spec
from tests.conftest import cli, load

STUDIES = Path(__file__).parent.parent / "studies"


def shortened(tmp_path, name, **changes):
    """A shipped study copied to tmp_path, with top-level and train fields changed."""
    data = yaml.safe_load((STUDIES / f"{name}.yaml").read_text())
    for key, value in changes.items():
        if key in ("epochs", "batch_size"):
            data["objective"]["train"][key] = value
        else:
            data[key] = value
    for extra in STUDIES.glob("*.csv"):
        shutil.copy(extra, tmp_path)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_study_validates(path):
    result = cli("validate", path)
    assert result.exit_code == 0, result.output


def test_quickstart_end_to_end_short(tmp_path):
    path = shortened(tmp_path, "quickstart", n_trials=4, epochs=3)
    result = cli("run", path, "-q")
    assert result.exit_code == 0, result.output
    study = load(path, "quickstart")
    assert len(study.trials) == 4
    for trial in study.trials:
        attrs = trial.user_attrs
        assert attrs["device"] == "cpu"
        assert attrs["expected_initial_loss"] == pytest.approx(math.log(10), abs=1e-6)
        assert attrs["n_params"] > 10_000
        assert attrs["train_seconds"] > 0
        if trial.state == TrialState.COMPLETE:
            assert attrs["epochs_run"] == 3
            accuracies = attrs["val_accuracy"]
            assert len(accuracies) == len(attrs["train_loss"]) == len(attrs["val_loss"]) == 3
            # reported per epoch for pruners and learning curves; the value is the best epoch
            assert [trial.intermediate_values[e] for e in range(3)] == pytest.approx(accuracies)
            assert trial.value == pytest.approx(max(accuracies))
        else:
            assert trial.state == TrialState.PRUNED
            assert trial.user_attrs["prune_reason"]


def test_exploding_learning_rate_is_pruned_as_diverged_in_its_first_epoch(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("""
name: explode
direction: maximize
metric: val_accuracy
n_trials: 1
objective:
  trainer: mlp
  data: {dataset: digits}
  model: {hidden: [64]}
  train: {epochs: 5, batch_size: 32, optimizer: sgd, lr: 50.0}
""")
    result = cli("run", path, "-q")
    assert result.exit_code == 0, result.output
    assert "(1 diverged)" in result.output
    trial = load(path, "explode").trials[0]
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["prune_reason"].startswith("diverged: cost")
    assert trial.user_attrs["epochs_run"] == 1
    assert trial.intermediate_values == {}  # stopped inside epoch 0, before any report


@pytest.mark.parametrize(("extra", "fragment"), [
    ("search_space:\n  learning_rate: {type: float, low: 0.001, high: 0.1}\n",
     "search_space.learning_rate: the mlp trainer does not use 'learning_rate'; "
     "it uses: hidden, activation"),
    ("search_space:\n  optimizer: {type: categorical, choices: [adam, lbfgs]}\n",
     "search_space.optimizer.choices: unknown optimizer 'lbfgs'; allowed: sgd, momentum"),
    ("search_space:\n  hidden: {type: categorical, choices: [64]}\n"
     "  n_layers: {type: int, low: 1, high: 2}\n",
     "search hidden, or hidden_units and n_layers, not both"),
    ("search_space:\n  hidden: {type: categorical, choices: [64, \"64;32\"]}\n",
     "search_space.hidden.choices: '64;32' is not a layer shape"),
])
def test_trainer_search_space_is_checked(tmp_path, extra, fragment):
    path = tmp_path / "study.yaml"
    path.write_text("name: t\ndirection: maximize\nmetric: val_accuracy\nn_trials: 2\n"
                    "objective: {trainer: mlp, data: {dataset: iris}}\n" + extra)
    with pytest.raises(SpecError) as raised:
        load_spec(path)
    assert fragment in str(raised.value)


@pytest.mark.parametrize(("head", "fragment"), [
    ("direction: minimize\nmetric: val_accuracy\n", "direction: val_accuracy needs direction: "
                                                    "maximize"),
    ("direction: minimize\nmetric: accuracy\n", "metric: the mlp trainer reports val_accuracy"),
])
def test_trainer_metric_and_direction_agree(tmp_path, head, fragment):
    path = tmp_path / "study.yaml"
    path.write_text(f"name: t\n{head}n_trials: 2\nobjective: {{trainer: mlp, data: "
                    "{dataset: iris}}\n")
    with pytest.raises(SpecError, match=fragment):
        load_spec(path)


def test_bad_data_file_stops_before_the_database(tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    path = tmp_path / "study.yaml"
    path.write_text("name: t\ndirection: minimize\nmetric: val_loss\nn_trials: 2\n"
                    "objective: {trainer: mlp, data: {path: data.csv, label: y}}\n")
    result = cli("run", path, "-q")
    assert result.exit_code == 1
    assert "data.csv has no column 'y'; its columns: a, b" in result.output
    assert not (tmp_path / "t.db").exists()


def test_hidden_choices_and_width_search(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("""
name: widths
direction: minimize
metric: val_loss
n_trials: 3
sampler: {type: grid}
objective:
  trainer: mlp
  data: {dataset: iris}
  train: {epochs: 2}
search_space:
  hidden: {type: categorical, choices: [8, "16,4", "4x3"]}
""")
    assert cli("run", path, "-q").exit_code == 0
    sizes = {t.params["hidden"]: t.user_attrs["n_params"] for t in load(path, "widths").trials}
    # iris: 4 features, 3 classes
    assert sizes == {8: 4 * 8 + 8 + 8 * 3 + 3,
                     "16,4": 4 * 16 + 16 + 16 * 4 + 4 + 4 * 3 + 3,
                     "4x3": 4 * 4 + 4 + 4 * 4 + 4 + 4 * 4 + 4 + 4 * 3 + 3}


def test_a_rising_validation_loss_is_not_divergence(tmp_path):
    # The trainer holds its training cost to the rule, step by step. Its per-epoch reports are
    # metrics: an overfitting trial's val_loss rises, and its best epoch must be kept.
    path = tmp_path / "study.yaml"
    path.write_text("""
name: overfit
direction: minimize
metric: val_loss
n_trials: 1
pruner: {divergence: {factor: 1.2}}
objective:
  trainer: mlp
  data: {dataset: synthetic, n_samples: 60, n_features: 40, seed: 3}
  model: {hidden: [256, 256], initializer: xavier_uniform}
  train: {epochs: 40, batch_size: 8, lr: 0.003, optimizer: adam, threads: 1}
""")
    result = cli("run", path, "-q")
    assert result.exit_code == 0, result.output
    trial = load(path, "overfit").trials[0]
    val_loss = trial.user_attrs["val_loss"]
    assert max(val_loss) > 1.2 * val_loss[0]  # the old per-epoch check would have pruned it
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs["epochs_run"] == 40
    assert trial.value == min(val_loss)
