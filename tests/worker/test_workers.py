"""Worker processes sharing one study: real subprocesses on SQLite, PostgreSQL and MySQL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections import Counter

import optuna
import optuna_dashboard
import pytest
from optuna.trial import TrialState

from hpo.worker.workers import TRIALS_PER_WORKER
from tests.conftest import (
    HPO,
    server_url,
    sleepy_study,
    start_workers,
    study_yaml,
    trials,
    wait_all,
    wait_until,
    write_study,
)


def states(url, name):
    return Counter(t.state for t in trials(url, name))


def finished(url, name):
    counts = states(url, name)
    return counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]


def test_eight_workers_end_with_exactly_the_budget_repeatedly(tmp_path, storage_url):
    path, name = sleepy_study(tmp_path, n_trials=40, sleep=0.02)
    for round_budget in (40, 56):  # a second round extends the study: again exact
        path.write_text(path.read_text().replace("n_trials: 40", f"n_trials: {round_budget}"))
        outputs = wait_all(start_workers(path, storage_url, 8))
        assert all(code == 0 for code, _, _ in outputs), outputs
        counts = states(storage_url, name)
        assert counts[TrialState.COMPLETE] == round_budget
        assert counts[TrialState.RUNNING] == counts[TrialState.WAITING] == 0
    by_worker = Counter(t.user_attrs["worker_pid"] for t in trials(storage_url, name))
    assert len(by_worker) >= 4  # the work was shared, not done by one worker


@pytest.mark.parametrize("sampler", ["{type: random, seed: 0}",
                                     "{type: tpe, seed: 0, n_startup_trials: 12}"])
def test_workers_propose_different_trials(tmp_path, storage_url, sampler):
    # Three workers started exactly as the README says, with nothing but the study file.
    path, name = sleepy_study(tmp_path, n_trials=12, sleep=0.05, sampler=sampler)
    outputs = wait_all(start_workers(path, storage_url, 3))
    assert all(code == 0 for code, _, _ in outputs), outputs
    done = trials(storage_url, name)
    assert [t.state for t in done] == [TrialState.COMPLETE] * 12
    assert len({t.params["x"] for t in done}) == 12
    assert len({t.user_attrs["worker_pid"] for t in done}) >= 2  # each proposed some
    # A seeded study proposes trial by trial what one worker alone would have.
    alone, alone_name = sleepy_study(tmp_path / "alone", n_trials=12, sleep=0.0,
                                     sampler=sampler)
    assert wait_all(start_workers(alone, storage_url, 1))[0][0] == 0
    if "random" in sampler:
        by_number = {t.number: t.params["x"] for t in trials(storage_url, alone_name)}
        assert {t.number: t.params["x"] for t in done} == by_number


def test_two_local_worker_groups_propose_different_trials(tmp_path):
    # `hpo run --workers 2` on two machines (here: twice on one) share one study.
    path, name = sleepy_study(tmp_path, n_trials=16, sleep=0.05)
    url = f"sqlite:///{tmp_path / name}.db"
    groups = start_workers(path, url, 2, extra=["--workers", "2"])
    outputs = wait_all(groups)
    assert all(code == 0 for code, _, _ in outputs), outputs
    done = trials(url, name)
    assert len(done) == 16 and len({t.params["x"] for t in done}) == 16
    assert {t.user_attrs["worker_id"] for t in done} <= {"0", "1"}


def test_grid_with_five_workers_runs_each_point_once(tmp_path, storage_url):
    space = ("  x: {type: int, low: 1, high: 4}\n"
             "  kind: {type: categorical, choices: [a, b, c]}\n")
    path, name = sleepy_study(tmp_path, n_trials=100, sleep=0.05,
                              sampler="{type: grid, seed: 0}", space=space)
    outputs = wait_all(start_workers(path, storage_url, 5))
    assert all(code == 0 for code, _, _ in outputs), outputs
    points = [(t.params["x"], t.params["kind"]) for t in trials(storage_url, name)]
    assert len(points) == len(set(points)) == 12


@pytest.mark.slow
def test_sigkill_mid_trial_is_failed_and_retried(tmp_path, storage_url):
    path, name = sleepy_study(tmp_path, n_trials=8, sleep=2.0,
                              extra="heartbeat: {interval: 1, grace: 3, max_retries: 2}\n")
    survivors = start_workers(path, storage_url, 2)
    victim = start_workers(path, storage_url, 1, label="9")[0]
    wait_until(lambda: any(t.state == TrialState.RUNNING and t.user_attrs.get("worker_id") == "9"
                           for t in trials(storage_url, name)),
               60, "the victim to be in the middle of a trial", interval=0.1)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    outputs = wait_all(survivors)
    assert all(code == 0 for code, _, _ in outputs), outputs
    all_trials = trials(storage_url, name)
    counts = Counter(t.state for t in all_trials)
    assert counts[TrialState.COMPLETE] == 8
    assert counts[TrialState.RUNNING] == 0
    dead = [t for t in all_trials if t.state == TrialState.FAIL]
    assert [t.user_attrs["worker_id"] for t in dead] == ["9"]
    retries = [t for t in all_trials if t.user_attrs.get("retry_of") == dead[0].number]
    assert len(retries) == 1
    assert retries[0].system_attrs["failed_trial"] == dead[0].number
    assert retries[0].params == dead[0].params
    assert retries[0].state == TrialState.COMPLETE


def test_spec_mismatch_between_workers_is_refused(tmp_path, storage_url):
    path, name = sleepy_study(tmp_path, n_trials=2, sleep=0.0)
    assert wait_all(start_workers(path, storage_url, 1))[0][0] == 0
    path.write_text(path.read_text().replace("seed: 0", "seed: 1"))
    code, out, err = wait_all(start_workers(path, storage_url, 1))[0]
    assert code == 1
    assert "was created from a different spec: sampler.seed is 0 there but 1" in err
    assert len(trials(storage_url, name)) == 2
    # Heartbeat settings belong to the study: a worker reaps others' trials by its own grace.
    path.write_text(path.read_text().replace("seed: 1", "seed: 0")
                    + "heartbeat: {interval: 5, grace: 60}\n")
    code, out, err = wait_all(start_workers(path, storage_url, 1))[0]
    assert code == 1
    assert ("was created from a different spec: heartbeat is not set (the default) there but "
            "{'interval': 5, 'grace': 60}") in err


def test_workers_starting_a_new_study_with_different_files_cannot_both_write_theirs(tmp_path,
                                                                                     storage_url):
    for round_ in range(3):
        first, name = sleepy_study(tmp_path / f"a{round_}", n_trials=2, sleep=0.0)
        second = tmp_path / f"b{round_}" / "study.yaml"
        second.parent.mkdir()
        (second.parent / "objective.py").write_text((first.parent / "objective.py").read_text())
        second.write_text(first.read_text().replace("seed: 0", "seed: 5"))
        outputs = wait_all(start_workers(first, storage_url, 1) +
                           start_workers(second, storage_url, 1))
        codes = sorted(code for code, _, _ in outputs)
        assert codes == [0, 1], outputs
        refused = [err for code, _, err in outputs if code == 1][0]
        assert "was created from a different spec: sampler.seed is" in refused


def test_local_workers_flag(tmp_path):
    path, name = sleepy_study(tmp_path, n_trials=10, sleep=0.05)
    done = subprocess.run([HPO, "run", str(path), "--workers", "3", "-q"], capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "Ran 10 trials with 3 workers" in done.stdout
    assert "database is locked" not in done.stderr
    url = f"sqlite:///{tmp_path / name}.db"
    assert states(url, name)[TrialState.COMPLETE] == 10
    assert {t.user_attrs["worker_id"] for t in trials(url, name)} <= {"0", "1", "2"}
    # The dashboard note is written once, by the launcher, not by each of its workers.
    study = optuna.load_study(study_name=name, storage=url)
    assert study._storage.get_study_system_attrs(study._study_id)["dashboard:note_ver"] == 1
    assert optuna_dashboard.get_note(study).startswith(f"# {name}")
    # --worker-id composes with --workers: a label per child.
    path.write_text(path.read_text().replace("n_trials: 10", "n_trials: 14"))
    done = subprocess.run([HPO, "run", str(path), "--workers", "2", "-q", "--worker-id", "gpu7"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    labels = {t.user_attrs["worker_id"] for t in trials(url, name) if t.number >= 10}
    assert labels <= {"gpu7.0", "gpu7.1"} and labels


def trainer_study(tmp_path, n_trials, epochs=300):
    name = f"t-{uuid.uuid4().hex[:12]}"
    body = study_yaml(name, direction="maximize", metric="val_accuracy", n_trials=n_trials,
                      sampler="{type: random, seed: 0}",
                      trainer=f"""
                          data: {{dataset: iris}}
                          model: {{hidden: [16]}}
                          train: {{epochs: {epochs}}}
                      """, space="lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}")
    return write_study(tmp_path, body), name


def children_of(pid: int) -> list[int]:
    return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]


def cmdline(pid: int) -> bytes:
    return open(f"/proc/{pid}/cmdline", "rb").read()


def test_trainer_workers_are_forked_after_startup(tmp_path):
    # The built-in trainer's workers are forked from the launcher once it has imported torch
    # and loaded the data: they run the launcher's own command line, not `python -m hpo run`.
    path, name = trainer_study(tmp_path, n_trials=6)
    launcher = subprocess.Popen([HPO, "run", str(path), "--workers", "2", "-q"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: len(children_of(launcher.pid)) >= 2, 60,
               "the launcher to start two workers")
    workers = children_of(launcher.pid)
    assert len(workers) == 2, "the launcher did not start two workers"
    assert all(cmdline(pid) == cmdline(launcher.pid) for pid in workers)
    out, err = launcher.communicate(timeout=180)
    assert launcher.returncode == 0, err
    assert "Ran 6 trials with 2 workers" in out
    # A worker waiting for its sibling's last trial is the normal end, not news.
    assert "waiting for running trial" not in err
    url = f"sqlite:///{tmp_path / name}.db"
    done = trials(url, name)
    assert Counter(t.state for t in done)[TrialState.COMPLETE] == 6
    assert {t.user_attrs["worker_id"] for t in done} == {"0", "1"}
    assert {t.user_attrs["threads"] for t in done} == {1}  # one thread each, on every path


def test_hpo_run_uses_every_cpu_for_the_trainer_only_when_it_pays(tmp_path):
    cpus = len(os.sched_getaffinity(0))
    if cpus < 2:
        pytest.skip("one CPU: one worker is all there is")
    chose = f"hpo: {cpus} workers, one per usable CPU, each training on one thread"
    enough = TRIALS_PER_WORKER * cpus
    path, name = trainer_study(tmp_path / "many", n_trials=enough, epochs=20)
    done = subprocess.run([HPO, "run", str(path), "-q"], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0].startswith(chose)
    assert f"Ran {enough} trials with {cpus} workers" in done.stdout
    url = f"sqlite:///{tmp_path / 'many' / name}.db"
    assert {t.user_attrs["threads"] for t in trials(url, name)} == {1}
    # ... and not with fewer trials, or for a user's objective.
    few, _ = trainer_study(tmp_path / "few", n_trials=enough - 1, epochs=20)
    callable_path, _ = sleepy_study(tmp_path / "callable", n_trials=enough, sleep=0.0)
    for command in ([HPO, "run", str(few), "-q"], [HPO, "run", str(callable_path), "-q"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        assert "workers, one per usable CPU" not in done.stderr
        assert " with " not in done.stdout.splitlines()[-2], done.stdout


@pytest.mark.slow
def test_sigterm_stops_forked_trainer_workers_leaving_nothing_running(tmp_path):
    path, name = trainer_study(tmp_path, n_trials=100)
    launcher = subprocess.Popen([HPO, "run", str(path), "--workers", "2", "-q"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"sqlite:///{tmp_path / name}.db"
    wait_until(lambda: states(url, name)[TrialState.COMPLETE] >= 2, 60,
               "two completed trials", interval=0.2)
    workers = children_of(launcher.pid)
    launcher.send_signal(signal.SIGTERM)
    _, err = launcher.communicate(timeout=30)
    assert launcher.returncode == 143, err
    assert "Traceback" not in err
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)
    assert states(url, name)[TrialState.RUNNING] == 0


def test_password_never_appears(tmp_path):
    from sqlalchemy import make_url

    # The test server trusts local connections, so it accepts any password in the URL.
    base = server_url("postgresql")
    url = make_url(base).set(password="s3cret-pw").render_as_string(hide_password=False)
    assert "s3cret-pw" in url
    # Nothing listens on port 1 of the loopback: refused at once, whatever the server's port.
    unreachable = make_url(url).set(host="127.0.0.1", port=1)
    path, name = sleepy_study(tmp_path, n_trials=4, sleep=0.0)
    outputs = wait_all(start_workers(path, url, 2))
    status = subprocess.run([HPO, "status", str(path), "--json"], capture_output=True, text=True,
                            env={**os.environ, "HPO_STORAGE": url}, timeout=60)
    export = subprocess.run([HPO, "export", str(path), "--format", "json"], capture_output=True,
                            text=True, env={**os.environ, "HPO_STORAGE": url}, timeout=60)
    bad = subprocess.run([HPO, "run", str(path), "--storage",
                          unreachable.render_as_string(hide_password=False)],
                         capture_output=True, text=True, timeout=60)
    texts = [o for _, out, err in outputs for o in (out, err)]
    texts += [status.stdout, status.stderr, export.stdout, export.stderr, bad.stdout, bad.stderr]
    assert "Error: cannot open storage postgresql+psycopg://postgres:***@" in bad.stderr
    for text in texts:
        assert "s3cret-pw" not in text
    study = optuna.load_study(study_name=name, storage=base)
    system_attrs = study._storage.get_study_system_attrs(study._study_id)
    assert "s3cret-pw" not in repr(study.user_attrs) + repr(system_attrs)
    for trial in study.trials:
        assert "s3cret-pw" not in repr(trial.user_attrs) + repr(trial.system_attrs)


@pytest.mark.slow
def test_a_postgres_restart_mid_run_is_survived(tmp_path, postgres_proxy):
    # A restart as the workers see it, made with the proxy: the shared server stays up.
    url, proxy, proxied = postgres_proxy
    path, name = sleepy_study(tmp_path, n_trials=16, sleep=0.3,
                              extra="heartbeat: {interval: 1, grace: 3, max_retries: 3}\n")
    workers = start_workers(path, proxied, 2)
    wait_until(lambda: finished(url, name) >= 3, 60, "three finished trials", interval=0.1)
    proxy.cut()  # every connection dropped, new ones refused...
    time.sleep(2)  # ...for as long as a restart keeps the server away: the outage under test
    proxy.restore()
    outputs = wait_all(workers)
    assert all(code == 0 for code, _, _ in outputs), outputs
    counts = states(url, name)
    assert counts[TrialState.COMPLETE] == 16
    assert counts[TrialState.RUNNING] == 0
