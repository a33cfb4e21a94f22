"""The worker's packed trials (`hpo.worker.packing`): how their ends reach the study."""

from __future__ import annotations

import threading

import pytest
from optuna.trial import TrialState

from hpo.training.pack import Pack
from hpo.worker.objective import TrainerObjective
from tests.conftest import cli, load
from tests.worker.test_packed_run import write

LIMIT = "max_failures_in_a_row: 2\n"


def heartbeats() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("hpo-heartbeat-")}


def test_a_failure_limit_tripped_by_a_pack_tells_every_ended_trial_first(tmp_path, monkeypatch):
    # Four trials of one shape end together at the end of their only epoch, and each fails
    # as it is recorded: twice the limit (2) in one step. All four are told before it stops.
    path = write(tmp_path, n_trials=8, epochs=1, pack=4, extra=LIMIT)
    text = path.read_text().replace("choices: [32, 64]", "choices: [32]")
    path.write_text(text.replace("choices: [sgd, momentum, adam, rmsprop]", "choices: [sgd]"))

    def failing(self, trial, result):
        raise ValueError(f"trial {trial.number} cannot be recorded")

    monkeypatch.setattr(TrainerObjective, "finish", failing)
    beating = heartbeats()
    result = cli("run", str(path), "-q")
    assert result.exit_code == 1
    trials = load(path, "packed").trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 4
    assert "Error: 4 trials in a row failed, the last with ValueError: trial" in result.output
    # Each told how it ended, not that the worker stopped.
    assert [t.user_attrs["fail_reason"] for t in trials] == [
        f"ValueError: trial {t.number} cannot be recorded" for t in trials]
    assert heartbeats() == beating


def test_a_failing_stacked_step_fails_its_whole_pack_and_stops_once(tmp_path, monkeypatch):
    path = write(tmp_path, n_trials=8, epochs=2, pack=4, extra=LIMIT)
    real = Pack.step
    steps = []

    def breaking(self):
        steps.append(len(self))
        if len(steps) == 3:
            raise RuntimeError("the stacked model broke")
        return real(self)

    monkeypatch.setattr(Pack, "step", breaking)
    beating = heartbeats()
    result = cli("run", str(path), "-q")
    assert result.exit_code == 1
    trials = load(path, "packed").trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 4
    assert ("Error: 4 trials in a row failed, the last with RuntimeError: the stacked model "
            "broke") in result.output
    assert {t.user_attrs["fail_reason"] for t in trials} == {
        "RuntimeError: the stacked model broke"}
    assert heartbeats() == beating


@pytest.mark.parametrize("pack", [1, 3])
def test_a_run_that_fails_below_the_limit_goes_on(tmp_path, monkeypatch, pack):
    # One failure below the limit fails its own trial only; the study runs to its budget.
    path = write(tmp_path, n_trials=4, epochs=1, pack=pack, extra=LIMIT)
    real = TrainerObjective.finish

    def first_fails(self, trial, result):
        if trial.number == 0:
            raise ValueError("the first cannot be recorded")
        return real(self, trial, result)

    monkeypatch.setattr(TrainerObjective, "finish", first_fails)
    beating = heartbeats()
    result = cli("run", str(path), "-q")
    assert result.exit_code == 0, result.output
    trials = load(path, "packed").trials
    assert trials[0].state == TrialState.FAIL
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE] * 4
    assert heartbeats() == beating
