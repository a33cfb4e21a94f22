"""`hpo check`: each check passes on a healthy setup and warns or fails on a broken one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hpo.spec import load_spec
from hpo.wisdom import check
from hpo.wisdom.setup import trainer_setup
from tests.conftest import assert_one_line, cli, write_study

HEALTHY = """
name: healthy
direction: maximize
metric: val_accuracy
n_trials: 5
objective:
  trainer: mlp
  data: {dataset: digits}
  model: {hidden: [64], batch_norm: true, initializer: he_normal}
  train: {epochs: 2}
search_space:
  lr: {type: float, low: 1.0e-5, high: 30.0, log: true}
"""


def _checks(result) -> dict:
    return {c["name"]: c for c in json.loads(result.output)["checks"]}


def test_a_healthy_setup_passes_every_check(tmp_path):
    result = cli("check", write_study(tmp_path, HEALTHY), "--json")
    assert result.exit_code == 0, result.output
    checks = _checks(result)
    assert list(checks) == ["initial_loss", "overfit_tiny", "lr_sweep", "zero_input"]
    for item in checks.values():
        assert set(item) == {"name", "status", "measured", "expected", "hint"}
        assert item["status"] == "pass", item
    assert checks["initial_loss"]["measured"] == pytest.approx(np.log(10), rel=0.5)
    assert checks["overfit_tiny"]["measured"] < check.TINY_LOSS
    sweep = checks["lr_sweep"]["measured"]
    assert not sweep[0]["diverged"] and sweep[-1]["diverged"]  # explodes only at the top


def test_constant_features_with_random_labels_fail_overfit_tiny(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "broken.npz", X=np.ones((300, 8)), y=rng.integers(0, 4, 300))
    body = HEALTHY.replace("{dataset: digits}", "{path: broken.npz}")
    result = cli("check", write_study(tmp_path, body), "--json")
    assert result.exit_code == 1, result.output
    checks = _checks(result)
    assert checks["overfit_tiny"]["status"] == "fail"
    assert "labels" in checks["overfit_tiny"]["hint"]
    assert checks["zero_input"]["status"] == "fail"


def test_a_unit_normal_initializer_on_a_wide_net_flags_initial_loss(tmp_path):
    body = HEALTHY.replace("{hidden: [64], batch_norm: true, initializer: he_normal}",
                           "{hidden: [512, 512], batch_norm: false, initializer: normal}")
    spec = load_spec(write_study(tmp_path, body))
    item = check.initial_loss(spec, trainer_setup(spec, {}, "check"))
    assert item.status == "warn"
    assert item.measured > 10 * np.log(10)
    assert "initializer normal" in item.hint


def test_a_searched_bad_initializer_is_named(tmp_path):
    body = HEALTHY + "  initializer: {type: categorical, choices: [he_normal, normal]}\n"
    body = body.replace("hidden: [64], batch_norm: true", "hidden: [256], batch_norm: false")
    spec = load_spec(write_study(tmp_path, body))
    item = check.initial_loss(spec, trainer_setup(spec, {}, "check"))
    assert item.status == "warn"
    assert "normal (searched)" in item.hint
    # The file's own initializer alone is healthy: the searched one is what is flagged.
    alone = check.initial_loss(spec, trainer_setup(spec, {"initializer": "he_normal"}, "check"))
    assert alone.status == "pass"


@pytest.mark.parametrize(("low", "high", "optimizer", "fragment"), [
    (1e-6, 1e-4, "adam", "nothing diverged"),
    (200.0, 2000.0, "sgd", "every lr diverged"),
])
def test_lr_sweep_warns_when_nothing_or_everything_explodes(tmp_path, low, high, optimizer,
                                                            fragment):
    body = HEALTHY.replace("low: 1.0e-5, high: 30.0", f"low: {low}, high: {high}")
    body = body.replace("train: {epochs: 2}", f"train: {{epochs: 2, optimizer: {optimizer}}}")
    spec = load_spec(write_study(tmp_path, body))
    result = check.lr_sweep(spec, trainer_setup(spec, {}, "check"))
    assert result.status == "warn"
    assert fragment in result.hint


def test_a_callable_objective_gets_one_line(tmp_path):
    path = write_study(tmp_path, """
        name: quad
        n_trials: 2
        objective: {callable: "objective.py:objective"}
        search_space:
          x: {type: float, low: 0.0, high: 1.0}
    """)
    for command in ("check", "lr-find"):
        result = cli(command, path)
        assert result.exit_code == 1
        assert_one_line(result.output.strip(), "Error: ", [f"hpo {command}", "built-in trainer"])


def test_a_bad_param_override_is_one_line(tmp_path):
    path = write_study(tmp_path, HEALTHY)
    result = cli("check", path, "--param", "optimiser=sgd")
    assert result.exit_code == 1
    assert_one_line(result.output.strip(), "Error: ", ["optimiser", "did you mean 'optimizer'"])
    result = cli("check", path, "--param", "batch_size=0")
    assert_one_line(result.output.strip(), "Error: ", ["--param batch_size=0"])
