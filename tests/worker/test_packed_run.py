"""`hpo run` with `train.pack`: several trials per worker at once, each its own Optuna trial."""

from __future__ import annotations

import signal
import subprocess

import optuna
import pytest
from optuna.trial import TrialState

from hpo.spec import load_spec
from hpo.worker.packing import pack_size
from tests.conftest import HPO, assert_one_line, cli, load, wait_until

STUDY = """
name: {name}
direction: maximize
metric: val_accuracy
n_trials: {n_trials}
sampler: {{type: random, seed: 3}}
objective:
  trainer: mlp
  data: {{dataset: digits}}
  model: {{hidden: [32], batch_norm: true}}
  train: {{epochs: {epochs}, pack: {pack}, threads: 1}}
search_space:
  lr: {{type: float, low: 1.0e-3, high: 0.1, log: true}}
  dropout: {{type: float, low: 0.0, high: 0.3}}
  batch_size: {{type: categorical, choices: [32, 64]}}
  optimizer: {{type: categorical, choices: [sgd, momentum, adam, rmsprop]}}
"""


def write(tmp_path, name="packed", n_trials=6, epochs=2, pack=3, extra=""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(STUDY.format(name=name, n_trials=n_trials, epochs=epochs, pack=pack)
                    + extra)
    return path


def overlapped(trials: list[optuna.trial.FrozenTrial]) -> bool:
    """Whether some trial started before an earlier-numbered one finished."""
    trials = sorted(trials, key=lambda t: t.number)
    return any(later.datetime_start < earlier.datetime_complete
               for earlier, later in zip(trials, trials[1:], strict=False))


def test_packed_trials_each_get_the_result_they_get_alone(tmp_path):
    # The random sampler seeds each trial by its number: the same trials both ways.
    alone, packed = write(tmp_path, "alone", pack=1), write(tmp_path, "packed", pack=3)
    for path in (alone, packed):
        result = cli("run", str(path), "-q")
        assert result.exit_code == 0, result.output
    alone_trials, packed_trials = load(alone, "alone").trials, load(packed, "packed").trials
    assert len(packed_trials) == 6
    assert overlapped(packed_trials) and not overlapped(alone_trials)
    for one, other in zip(alone_trials, packed_trials, strict=True):
        assert one.params == other.params
        assert other.state == TrialState.COMPLETE
        assert other.value == pytest.approx(one.value, abs=0.006)  # within 2 of 360 examples
        assert other.user_attrs["epochs_run"] == 2
        # Each member's own curve, reported per epoch for pruners and the dashboard.
        assert other.intermediate_values == pytest.approx(
            dict(enumerate(other.user_attrs["val_accuracy"])))
        assert other.user_attrs["val_accuracy"] == pytest.approx(
            one.user_attrs["val_accuracy"], abs=0.006)


def test_a_diverging_member_is_pruned_alone_and_its_pack_mates_complete(tmp_path):
    path = write(tmp_path, n_trials=3, extra="enqueue:\n  - {lr: 0.1, optimizer: sgd}\n")
    # An SGD learning rate of 50 explodes at once; enqueued first, it packs with two others.
    text = path.read_text().replace("high: 0.1, log: true", "high: 50.0, log: true")
    path.write_text(text.replace("{lr: 0.1, optimizer: sgd}", "{lr: 50.0, optimizer: sgd}"))
    result = cli("run", str(path), "-q")
    assert result.exit_code == 0, result.output
    trials = load(path, "packed").trials
    assert overlapped(trials)
    exploded = trials[0]
    assert exploded.params["lr"] == 50.0
    assert exploded.state == TrialState.PRUNED
    assert exploded.user_attrs["prune_reason"].startswith("diverged: ")
    others = [t for t in trials[1:] if t.params["lr"] < 1.0]
    assert others and all(t.state == TrialState.COMPLETE for t in others)


@pytest.mark.slow
def test_sigint_fails_the_packed_trials_cleanly_and_the_next_run_resumes(tmp_path):
    path = write(tmp_path, n_trials=8, epochs=40, pack=4)
    worker = subprocess.Popen([HPO, "run", str(path), "-q", "--workers", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def running() -> int:
        try:
            return len(load(path, "packed").get_trials(states=(TrialState.RUNNING,)))
        except Exception:  # not created yet
            return 0

    wait_until(lambda: running() >= 2, 60, "two packed trials running", interval=0.1)
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 130, err
    assert "Traceback" not in err
    trials = load(path, "packed").trials
    assert TrialState.RUNNING not in {t.state for t in trials}
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) >= 2  # every trial in the pack, told one by one
    assert all(t.user_attrs["fail_reason"] == "interrupted by a signal" for t in failed)

    resumed = subprocess.run([HPO, "run", str(path), "-q", "--workers", "1",
                              "--n-trials", "8"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    study = load(path, "packed")
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 8


def test_a_bad_pack_is_one_line_naming_the_field(tmp_path):
    path = write(tmp_path, pack=0)
    result = cli("run", str(path))
    assert result.exit_code != 0
    assert_one_line(result.output.strip(), "Error:",
                    ["objective.train.pack", "at least 1", "got 0"])


def test_changing_pack_resumes_the_same_study(tmp_path):
    path = write(tmp_path, n_trials=3, epochs=1, pack=3)
    assert cli("run", str(path), "-q").exit_code == 0
    path.write_text(path.read_text().replace("pack: 3", "pack: 1").replace("n_trials: 3",
                                                                            "n_trials: 4"))
    result = cli("run", str(path), "-q")
    assert result.exit_code == 0, result.output
    assert len(load(path, "packed").trials) == 4


def test_auto_trains_one_at_a_time_and_a_callable_is_never_packed(tmp_path):
    # On the CPU packing measured no faster than one one-thread worker per core (see
    # hpo.worker.packing); on a GPU it is not measured yet.
    path = write(tmp_path, n_trials=2, epochs=1, pack="auto")
    assert pack_size(load_spec(path)) == 1
    done = subprocess.run([HPO, "run", str(path), "-q"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert not overlapped(load(path, "packed").trials)
    assert pack_size(load_spec(write(tmp_path, name="two", pack=2))) == 2
    callable_study = tmp_path / "callable.yaml"
    callable_study.write_text("name: c\ndirection: minimize\nn_trials: 2\n"
                              "objective: {callable: 'f.py:objective'}\n"
                              "search_space:\n  x: {type: float, low: 0, high: 1}\n")
    (tmp_path / "f.py").write_text("def objective(trial):\n    return trial.params['x']\n")
    assert pack_size(load_spec(callable_study)) == 1
