from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
from functools import partial

import optuna
import pytest
from optuna.trial import TrialState

from hpo.cli import main
from tests.conftest import HPO, cli, load, study_yaml, wait_until, write_study

STUDY = partial(study_yaml, sampler="{type: random, seed: 0}")


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help_with_an_example(command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "Example: hpo " + command in result.output


def test_top_level_help():
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("run", "validate", "status", "export"):
        assert command in result.output


def test_status_text_and_json(tmp_path):
    path = write_study(tmp_path, STUDY(n_trials=6, function="reporting"))
    cli("run", path, "-q")
    study = load(path)
    result = cli("status", path, "--top", "3")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "Study 'quad': 6 complete"
    best = study.best_trial
    assert lines[1].startswith(f"Best value = {best.value:.6g} (trial {best.number}): x=")
    assert lines[3].split() == ["trial", "value", "x"]
    ranked = sorted(study.trials, key=lambda t: t.value)[:3]
    assert [int(line.split()[0]) for line in lines[4:]] == [t.number for t in ranked]

    data = json.loads(cli("status", path, "--json").output)
    assert data["counts"] == {"COMPLETE": 6, "PRUNED": 0, "FAIL": 0, "RUNNING": 0, "WAITING": 0}
    assert data["best"]["number"] == best.number
    assert data["direction"] == "minimize"


def test_status_by_storage_and_study_name(tmp_path):
    path = write_study(tmp_path, STUDY(n_trials=2, function="objective"))
    cli("run", path, "-q")
    url = f"sqlite:///{tmp_path}/quad.db"
    assert "2 complete" in cli("status", "--storage", url, "--study", "quad").output
    missing = cli("status", "--storage", url, "--study", "nope")
    assert missing.exit_code == 1
    assert "no study named 'nope'" in missing.output and "it has: quad" in missing.output
    assert cli("status").exit_code == 2  # neither a file nor --storage/--study


def test_export_csv_and_json(tmp_path):
    path = write_study(tmp_path, STUDY(n_trials=4, function="reporting"))
    cli("run", path, "-q")
    study = load(path)
    rows = list(csv.DictReader(io.StringIO(cli("export", path, "--format", "csv").output)))
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3]
    for row, trial in zip(rows, study.trials, strict=True):
        assert row["state"] == "COMPLETE"
        assert float(row["value"]) == pytest.approx(trial.value)
        assert float(row["params.x"]) == pytest.approx(trial.params["x"])
        assert row["user_attrs.worker_host"] == trial.user_attrs["worker_host"]
        assert float(row["duration_s"]) >= 0

    out = tmp_path / "trials.json"
    result = cli("export", path, "--format", "json", "--out", out)
    assert result.exit_code == 0
    records = json.loads(out.read_text())
    assert records[2]["params"] == study.trials[2].params
    assert records[2]["intermediate_values"]["4"] == pytest.approx(
        study.trials[2].intermediate_values[4])


def test_installed_command_runs_a_study(tmp_path):
    path = write_study(tmp_path, STUDY(n_trials=3, function="objective"))
    done = subprocess.run([HPO, "run", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Study 'quad': 3 complete" in done.stdout
    assert "See it: hpo status" in done.stdout
    assert "3/3" in done.stderr  # the progress bar
    module = subprocess.run([sys.executable, "-m", "hpo", "status", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert "3 complete" in module.stdout


def test_help_and_user_objective_run_do_not_import_torch_or_sklearn(tmp_path):
    # sklearn would come with `import optuna_dashboard`, for the note a run writes at the end.
    path = write_study(tmp_path, STUDY(n_trials=1, function="objective"))
    probe = (
        "import sys\n"
        "from hpo.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch' in sys.modules, 'optuna' in sys.modules, 'sklearn' in sys.modules,\n"
        "      file=sys.stderr)\n"
    )
    help_run = subprocess.run([sys.executable, "-c", probe, "--help"],
                              capture_output=True, text=True, timeout=60)
    assert help_run.stderr.split()[-3:] == ["False", "False", "False"]
    run = subprocess.run([sys.executable, "-c", probe, "run", str(path), "-q"],
                         capture_output=True, text=True, timeout=120)
    assert run.stderr.split()[-3:] == ["False", "True", "False"], run.stderr
    import optuna_dashboard  # ...and the note it wrote without the dashboard reads as one

    assert optuna_dashboard.get_note(load(path)).startswith("# quad")


SLOW = '''
import time


def objective(trial):
    time.sleep(0.3)
    return trial.params["x"]
'''


def _finished(db_url):
    try:
        study = optuna.load_study(study_name="quad", storage=db_url)
    except KeyError:
        return 0
    return len(study.get_trials(states=(TrialState.COMPLETE,)))


@pytest.mark.slow
def test_sigint_fails_running_trial_cleanly_and_next_run_resumes(tmp_path):
    path = write_study(tmp_path, STUDY(n_trials=8, function="objective"), objective=SLOW)
    db_url = f"sqlite:///{tmp_path}/quad.db"
    worker = subprocess.Popen([HPO, "run", str(path), "-q"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    wait_until(lambda: _finished(db_url) >= 2, 60, "two completed trials")
    worker.send_signal(signal.SIGINT)
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 130, err
    assert "Stopped by SIGINT; the next `hpo run` resumes." in err
    assert "Study 'quad':" in out  # the summary still prints
    assert "Traceback" not in err
    trials = load(path).trials
    assert TrialState.RUNNING not in {t.state for t in trials}
    for trial in trials:
        if trial.state == TrialState.FAIL:
            assert trial.user_attrs["fail_reason"] == "interrupted by a signal"
    finished_before = _finished(db_url)
    assert 2 <= finished_before < 8

    resumed = subprocess.run([HPO, "run", str(path), "-q"], capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Ran {8 - finished_before} trials" in resumed.stdout
    assert _finished(db_url) == 8


def test_local_workers_launcher_does_not_import_torch():
    probe = "import sys, hpo.worker.workers; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "False", done.stderr
