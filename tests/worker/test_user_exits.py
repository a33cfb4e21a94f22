"""An objective that leaves by `sys.exit()`, a KeyboardInterrupt of its own or any other
BaseException fails its trial, like any exception; the run goes on and prints its summary."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from contextlib import closing

import pytest
from optuna.trial import TrialState

import hpo
from tests.conftest import HPO, load, study_yaml, wait_until, write_study

# Trial 1 leaves by EXIT (a statement); the others return a value.
LEAVING = '''
import sys


class Quit(BaseException):
    """Neither an Exception nor one of Python's own: a library's way out."""


def objective(trial):
    if trial.number == 1:
        {exit}
    return trial.params["x"] ** 2


def always(trial):
    {exit}
'''

EXITS = [
    ("sys.exit(3)", "SystemExit: the objective called sys.exit(3)"),
    ("sys.exit()", "SystemExit: the objective called sys.exit()"),
    ("sys.exit('no GPU left')", "SystemExit: the objective called sys.exit('no GPU left')"),
    ("raise KeyboardInterrupt", "KeyboardInterrupt: raised by the objective, not by a signal"),
    ("raise Quit('enough')", "Quit: enough"),
]


def _study(tmp_path, exit_statement, n_trials=4, function="objective", extra=""):
    body = study_yaml(n_trials=n_trials, function=function, sampler="{type: random, seed: 0}",
                      extra=extra)
    return write_study(tmp_path, body, objective=LEAVING.format(exit=exit_statement))


def _assert_failed_alone(path, reason, trials=5):
    """Trial 1 failed with `reason`, every other trial completed, none is left RUNNING."""
    study = load(path)
    states = [t.state for t in study.trials]
    assert len(states) == trials
    assert TrialState.RUNNING not in states
    assert states.count(TrialState.FAIL) == 1
    assert study.trials[1].state == TrialState.FAIL
    assert study.trials[1].user_attrs["fail_reason"] == reason


@pytest.mark.parametrize(("exit_statement", "reason"), EXITS,
                         ids=["exit-3", "exit-none", "exit-message", "keyboard", "base"])
def test_objective_leaving_fails_its_trial_and_the_run_goes_on(tmp_path, exit_statement,
                                                               reason):
    path = _study(tmp_path, exit_statement)
    done = subprocess.run([HPO, "run", str(path), "-q"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Study 'quad': 4 complete, 1 fail" in done.stdout
    assert "Ran 5 trials in" in done.stdout
    assert "(4 complete, 1 fail)" in done.stdout
    assert f"hpo: trial 1 failed: {reason}" in done.stderr
    assert "Traceback" not in done.stderr
    _assert_failed_alone(path, reason)


def test_local_workers_fail_the_trial_and_print_the_summary(tmp_path):
    path = _study(tmp_path, "sys.exit(3)")
    done = subprocess.run([HPO, "run", str(path), "-q", "--workers", "2"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "Study 'quad': 4 complete, 1 fail" in done.stdout
    assert "Ran 5 trials with 2 workers in" in done.stdout
    assert "Traceback" not in done.stderr
    _assert_failed_alone(path, "SystemExit: the objective called sys.exit(3)")


def test_max_failures_in_a_row_counts_exits(tmp_path):
    path = _study(tmp_path, "sys.exit(3)", function="always", extra="max_failures_in_a_row: 2")
    done = subprocess.run([HPO, "run", str(path), "-q"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stderr
    assert ("Error: 2 trials in a row failed, the last with SystemExit: the objective called "
            "sys.exit(3); fix the objective") in done.stderr
    assert "Traceback" not in done.stderr
    trials = load(path).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2


def test_python_api_returns_the_study_after_an_exit(tmp_path):
    path = _study(tmp_path, "raise KeyboardInterrupt")
    study = hpo.run(path, quiet=True)  # neither raises nor stops early
    assert [t.state for t in study.trials].count(TrialState.COMPLETE) == 4
    _assert_failed_alone(path, "KeyboardInterrupt: raised by the objective, not by a signal")


# A training script's habit: save what it can on Ctrl-C, then leave by sys.exit().
CLEANS_UP = '''
import sys
import time


def objective(trial):
    try:
        time.sleep(60)
    except KeyboardInterrupt:
        sys.exit(1)
    return trial.params["x"]
'''


@pytest.mark.slow
def test_a_real_signal_still_stops_the_worker_through_the_objectives_exit(tmp_path):
    path = write_study(tmp_path, study_yaml(n_trials=3), objective=CLEANS_UP)
    worker = subprocess.Popen([HPO, "run", str(path), "-q"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)

    def running():  # read-only, so that nothing races the worker creating its database
        try:
            with closing(sqlite3.connect(f"file:{tmp_path / 'quad.db'}?mode=ro", uri=True)) as db:
                return db.execute("SELECT 1 FROM trials WHERE state = 'RUNNING'").fetchone()
        except sqlite3.Error:  # not created yet
            return None

    wait_until(running, 60, "a running trial")
    worker.send_signal(signal.SIGINT)
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 130, err
    assert "Stopped by SIGINT; the next `hpo run` resumes." in err
    assert "Study 'quad': 1 fail" in out
    assert [(t.state, t.user_attrs["fail_reason"]) for t in load(path).trials] == [
        (TrialState.FAIL, "interrupted by a signal")]
