"""`hpo dashboard` as a subprocess on a free loopback port, seen by HTTP and by Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import optuna
import pytest

from tests.conftest import cli, write_study

HPO = shutil.which("hpo") or os.path.join(os.path.dirname(sys.executable), "hpo")

MIXED = '''
import time
import optuna


def objective(trial):
    outcome = trial.params["outcome"]
    for step in range(4):
        cost = 1.0 + step * (5.0 if outcome == "diverge" else 0.1)
        trial.report(cost, step)
        if outcome == "prune" and step == 2:
            raise optuna.TrialPruned("asked to stop")
    if outcome == "fail":
        raise RuntimeError("asked to fail")
    time.sleep(float(trial.params.get("sleep", 0.0)))
    return cost
'''

STUDY = """
name: board
n_trials: {n}
sampler: {{type: {sampler}, seed: 0}}
objective: {{callable: "objective.py:objective"}}
search_space:
  outcome: {{type: categorical, choices: {choices}}}
"""


def mixed_study(tmp_path):
    path = write_study(tmp_path, STUDY.format(n=4, sampler="grid",
                                              choices="[ok, prune, diverge, fail]"),
                       objective=MIXED)
    result = cli("run", path, "-q")
    assert result.exit_code == 0, result.output
    return path


@contextmanager
def dashboard(path, *flags):
    server = subprocess.Popen([HPO, "dashboard", str(path), "--port", "0", *flags],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert found, line
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def request(url, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, method=method, data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_api_serves_the_study_its_trials_and_note(tmp_path):
    path = mixed_study(tmp_path)
    with dashboard(path) as base:
        status, body = request(f"{base}/api/studies")
        assert status == 200
        summaries = json.loads(body)["study_summaries"]
        assert [s["study_name"] for s in summaries] == ["board"]
        status, body = request(f"{base}/api/studies/{summaries[0]['study_id']}?after=0")
        assert status == 200
        detail = json.loads(body)
    states = sorted(t["state"] for t in detail["trials"])
    assert states == ["Complete", "Fail", "Pruned", "Pruned"]
    reasons = {a["value"] for t in detail["trials"] for a in t["user_attrs"]
               if a["key"] == "prune_reason"}
    assert reasons == {"asked to stop", "diverged: cost 6 > 3.0 × original 1 at step 1"}
    curves = [t["intermediate_values"] for t in detail["trials"] if t["state"] == "Complete"]
    assert [v["value"] for v in curves[0]] == pytest.approx([1.0, 1.1, 1.2, 1.3])
    note = detail["note"]["body"]
    assert note.startswith("# board")
    assert "**Trials**: 1 complete, 2 pruned, 1 fail; **diverged**: 1" in note
    assert "## Reproduce" in note and "hpo run " in note


def test_read_only_refuses_changes_and_the_study_survives(tmp_path):
    path = mixed_study(tmp_path)
    with dashboard(path, "--read-only") as base:
        assert request(f"{base}/api/studies/1", method="DELETE")[0] == 403
        assert request(f"{base}/api/studies", method="POST",
                       body={"study_name": "new", "directions": ["minimize"]})[0] == 403
        assert request(f"{base}/api/studies/1/note", method="PUT",
                       body={"version": 9, "body": "x"})[0] == 403
        assert request(f"{base}/api/studies")[0] == 200
    study = optuna.load_study(study_name="board", storage=f"sqlite:///{tmp_path}/board.db")
    assert len(study.trials) == 4
    names = [s.study_name for s in optuna.get_all_study_summaries(study._storage)]
    assert names == ["board"]


def test_without_read_only_changes_are_allowed(tmp_path):
    path = mixed_study(tmp_path)
    with dashboard(path) as base:
        assert request(f"{base}/api/studies/1", method="DELETE")[0] == 204
    assert optuna.get_all_study_summaries(f"sqlite:///{tmp_path}/board.db") == []


def test_exposing_a_writable_dashboard_needs_a_flag(tmp_path):
    path = mixed_study(tmp_path)
    result = cli("dashboard", path, "--host", "0.0.0.0")
    assert result.exit_code == 1
    assert "add --read-only, or --allow-remote-writes" in result.output


def chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    return found


def test_a_person_sees_the_study_page(tmp_path):
    browser = chromium()
    path = mixed_study(tmp_path)
    with dashboard(path, "--read-only") as base:
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000",
             "--dump-dom", f"{base}/dashboard/studies/1"],
            capture_output=True, text=True, timeout=120,
        ).stdout
    assert "board (id=1)" in dom
    assert dom.count("js-plotly-plot") >= 2  # the history and the other plots rendered
    assert "Objective 0" not in dom  # the objective is named after the spec's metric


def test_dashboard_reads_while_two_workers_write(tmp_path):
    path = write_study(tmp_path, STUDY.format(n=30, sampler="random", choices="[ok]")
                       + "  sleep: {type: float, low: 0.0, high: 0.05}\n", objective=MIXED)
    assert cli("run", path, "-q", "--n-trials", "1").exit_code == 0  # the study exists
    with dashboard(path, "--read-only") as base:
        workers = [subprocess.Popen([HPO, "run", str(path), "-q", "--worker-id", str(i)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for i in range(2)]
        statuses = []
        # Reads spread over the writing, at most 60 about 0.1 s apart: the pacing is the
        # test (reads while workers write), not a wait for something.
        for _ in range(60):
            statuses.append(request(f"{base}/api/studies/1?after=0")[0])
            if all(w.poll() is not None for w in workers):
                break
            time.sleep(0.1)
        outputs = [w.communicate(timeout=120) for w in workers]
    assert set(statuses) == {200}
    assert all(w.returncode == 0 for w in workers), outputs
    assert not any("locked" in out + err for out, err in outputs)
    study = optuna.load_study(study_name="board", storage=f"sqlite:///{tmp_path}/board.db")
    assert len(study.trials) == 30
