"""The everyday commands through the installed `hpo`: init, list, best, enqueue, delete.

Each runs as a user runs it (a subprocess on a real SQLite file, PostgreSQL where the
storage matters); outputs are parsed, exit codes checked, and every refused input is
shown to leave the stored study as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from functools import partial

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.conftest import HPO, cli, server_url, study_yaml, write_study

QUAD = partial(study_yaml, sampler="{type: tpe, seed: 0}", space="""
    x: {type: float, low: -10.0, high: 10.0}
    kind: {type: categorical, choices: [a, b]}
    k: {type: int, low: 1, high: 9, step: 2}
    depth: {type: int, low: 1, high: 3, when: {kind: [b]}}
""")


def hpo(*args, input=None, env=None, cwd=None):
    """`hpo ARGS` as a process; returns the completed process (text output)."""
    return subprocess.run([HPO, *map(str, args)], capture_output=True, text=True, input=input,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=240)


def quad_study(tmp_path, n=6, run=True):
    path = write_study(tmp_path, QUAD(n_trials=n))
    if run:  # in-process, to save a process start: the setup, not what a test is about
        done = cli("run", path, "-q")
        assert done.exit_code == 0, done.output
    return path


def stored(path, storage=None, name="quad"):
    """The study's trials as plain data, read with plain Optuna."""
    storage = storage or f"sqlite:///{path.parent / name}.db"
    study = optuna.load_study(study_name=name, storage=storage)
    return [(t.number, t.state, t.params, t.value) for t in study.get_trials()]


# init ------------------------------------------------------------------------------------


def test_init_writes_a_trainer_study_that_validates_and_runs(tmp_path):
    made = hpo("init", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    path = tmp_path / "study.yaml"
    text = path.read_text()
    assert "trainer: mlp" in text and text.count("#") >= 10  # commented
    assert hpo("validate", path).returncode == 0
    ran = hpo("run", path, "-q", "--n-trials", "2", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    trials = stored(path, name="study")
    assert [t[1] for t in trials] == [TrialState.COMPLETE] * 2
    assert trials[0][3] > 0.5  # a real model on digits, not a placeholder


def test_init_with_an_objective_writes_a_runnable_stub_beside_the_file(tmp_path):
    path = tmp_path / "sub" / "search.yaml"
    made = hpo("init", path, "--objective", "train.py:fit")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "sub" / "train.py").read_text().count("def fit(") == 1
    assert "Wrote" in made.stdout and "train.py" in made.stdout
    ran = hpo("run", path, "-q", "--n-trials", "4")
    assert ran.returncode == 0, ran.stderr
    trials = stored(path, name="search")
    assert len(trials) == 4 and all(t[1] == TrialState.COMPLETE for t in trials)


def test_init_keeps_an_existing_objective_and_refuses_to_overwrite(tmp_path):
    (tmp_path / "train.py").write_text("def fit(trial):\n    return 1.0\n")
    (tmp_path / "study.yaml").write_text("mine\n")
    refused = hpo("init", "--objective", "train.py:fit", cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("Error: study.yaml: the file exists; choose another "
                                      "path or add --force")
    assert (tmp_path / "study.yaml").read_text() == "mine\n"
    forced = hpo("init", "--objective", "train.py:fit", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "train.py").read_text() == "def fit(trial):\n    return 1.0\n"
    assert "callable: \"train.py:fit\"" in (tmp_path / "study.yaml").read_text()


# list ------------------------------------------------------------------------------------


def test_list_shows_each_study_with_counts_best_and_activity(tmp_path):
    path = quad_study(tmp_path, n=5)
    other = write_study(tmp_path, QUAD("other", n_trials=3), name="other.yaml")
    other.write_text(other.read_text() + "storage: sqlite:///quad.db\n")
    assert hpo("run", other, "-q").returncode == 0
    listed = hpo("list", path, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["study"]: row for row in json.loads(listed.stdout)["studies"]}
    assert set(rows) == {"quad", "other"}
    assert rows["quad"]["counts"]["COMPLETE"] == 5 and rows["other"]["counts"]["COMPLETE"] == 3
    best = min(t[3] for t in stored(path))
    assert rows["quad"]["best"] == pytest.approx(best)
    assert rows["quad"]["direction"] == "minimize" and rows["quad"]["last_activity"]
    table = hpo("list", "--storage", f"sqlite:///{tmp_path / 'quad.db'}").stdout.splitlines()
    assert table[0].split()[:3] == ["study", "direction", "complete"]
    assert sorted(line.split()[0] for line in table[1:]) == ["other", "quad"]


def test_list_refuses_a_missing_sqlite_file_without_creating_it(tmp_path):
    missing = tmp_path / "typo.db"
    listed = hpo("list", "--storage", f"sqlite:///{missing}")
    assert listed.returncode == 1
    assert listed.stderr.strip() == (f"Error: no study database at {missing}; run `hpo run` "
                                     "on the study file first")
    assert not missing.exists()


def test_list_and_delete_on_postgresql(tmp_path):
    url = server_url("postgresql")
    name = f"listed-{uuid.uuid4().hex[:8]}"
    path = write_study(tmp_path, QUAD(name, n_trials=3))
    assert hpo("run", path, "-q", "--storage", url).returncode == 0
    rows = json.loads(hpo("list", "--storage", url, "--json").stdout)["studies"]
    assert [r["counts"]["COMPLETE"] for r in rows if r["study"] == name] == [3]
    deleted = hpo("delete", path, "--storage", url, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    names = [s.study_name for s in optuna.get_all_study_summaries(url)]
    assert name not in names


# best ------------------------------------------------------------------------------------


def test_best_prints_yaml_to_paste_and_json(tmp_path):
    path = quad_study(tmp_path)
    number, _, params, value = min(stored(path), key=lambda t: t[3])
    as_yaml = hpo("best", path)
    assert as_yaml.returncode == 0, as_yaml.stderr
    assert yaml.safe_load(as_yaml.stdout) == params
    assert as_yaml.stdout.startswith(f"# best value {value:.6g}: trial {number} of study quad")
    as_json = json.loads(hpo("best", path, "--format", "json").stdout)
    assert as_json == {"number": number, "value": value, "params": params}


def test_best_without_a_completed_trial_is_one_line(tmp_path):
    path = write_study(tmp_path, QUAD(n_trials=2, function="failing"))
    hpo("run", path, "-q")
    result = hpo("best", path)
    assert result.returncode == 1
    assert result.stderr.strip() == ("Error: study 'quad' has no completed trial yet; `hpo "
                                     "status` shows its trials")


# enqueue ---------------------------------------------------------------------------------


def test_enqueued_configuration_runs_first_and_counts_against_n_trials(tmp_path):
    path = quad_study(tmp_path, n=4, run=False)
    queued = hpo("enqueue", path, "x=1.5", "kind=b", "depth=2")
    assert queued.returncode == 0, queued.stderr
    assert "Queued 1 configuration in study 'quad'" in queued.stdout
    assert "The sampler picks what they leave out: k" in queued.stdout
    ran = hpo("run", path, "-q")
    assert ran.returncode == 0, ran.stderr
    trials = stored(path)
    assert len(trials) == 4  # the queued one is one of the 4, not a fifth
    assert trials[0][2]["x"] == 1.5 and trials[0][2]["kind"] == "b"
    assert trials[0][2]["depth"] == 2 and trials[0][2]["k"] in (1, 3, 5, 7, 9)


def test_best_of_one_study_enqueued_into_another_with_from(tmp_path):
    path = quad_study(tmp_path, n=5)
    best_file = tmp_path / "best.yaml"
    best_file.write_text(hpo("best", path).stdout)
    other = write_study(tmp_path / "next", QUAD("next", n_trials=1))
    queued = hpo("enqueue", other, "--from", best_file)
    assert queued.returncode == 0, queued.stderr
    assert hpo("run", other, "-q").returncode == 0
    best = min(stored(path), key=lambda t: t[3])
    (only,) = stored(other, name="next")
    assert only[2] == best[2] and only[3] == pytest.approx(best[3])


@pytest.mark.parametrize(("args", "message"), [
    (["x=11"], "Error: enqueue: x=11 is outside the search space (x: -10.0 .. 10.0 in "
               "study.yaml); give a value it can take"),
    (["k=4"], "Error: enqueue: k=4 is outside the search space (k: 1 .. 9 in steps of 2 in "
              "study.yaml); give a value it can take"),
    (["kind=c"], "Error: enqueue: kind='c' is outside the search space (kind: 'a', 'b' in "
                 "study.yaml); give a value it can take"),
    (["y=1"], "Error: enqueue: 'y' is not in study.yaml's search_space; it has: x, kind, k, "
              "depth"),
    (["kind=a", "depth=2"], "Error: enqueue: depth is searched only when kind is one of ['b']; "
                            "give kind too, or leave depth out"),
    (["x"], "Error: 'x': write NAME=VALUE, e.g. lr=0.01"),
])
def test_enqueue_refuses_values_outside_the_space_and_changes_nothing(tmp_path, args, message):
    path = quad_study(tmp_path, n=3)
    before = stored(path)
    refused = hpo("enqueue", path, *args)
    assert refused.returncode == 1
    assert refused.stderr.strip() == message
    assert stored(path) == before


def test_enqueue_on_postgresql_is_claimed_by_the_next_worker(tmp_path):
    url = server_url("postgresql")
    name = f"queued-{uuid.uuid4().hex[:8]}"
    path = write_study(tmp_path, QUAD(name, n_trials=2))
    env = {"HPO_STORAGE": url}
    assert hpo("enqueue", path, "x=-3.25", "kind=a", env=env).returncode == 0
    assert hpo("run", path, "-q", env=env).returncode == 0
    try:
        first = stored(path, storage=url, name=name)[0]
        assert first[2]["x"] == -3.25 and first[1] == TrialState.COMPLETE
    finally:
        optuna.delete_study(study_name=name, storage=url)


# delete ----------------------------------------------------------------------------------


def test_delete_asks_first_and_keeps_the_study_on_no(tmp_path):
    path = quad_study(tmp_path, n=3)
    before = stored(path)
    kept = hpo("delete", path, input="n\n")
    assert kept.returncode == 1
    assert "Study 'quad' in sqlite:///" in kept.stdout and "3 complete" in kept.stdout
    assert "Delete this study and its trials? This cannot be undone [y/N]" in kept.stdout
    assert stored(path) == before
    assert hpo("delete", path, input="").returncode == 1  # no answer is no
    assert stored(path) == before
    gone = hpo("delete", path, input="y\n")
    assert gone.returncode == 0 and "Deleted 'quad'" in gone.stdout
    with pytest.raises(KeyError):
        stored(path)


def test_delete_of_a_missing_study_is_one_line(tmp_path):
    path = quad_study(tmp_path, n=2)
    result = hpo("delete", "--storage", f"sqlite:///{tmp_path / 'quad.db'}", "--study", "qaud",
                 "--yes")
    assert result.returncode == 1
    assert result.stderr.strip() == (f"Error: no study named 'qaud' in sqlite:///{tmp_path}/"
                                     "quad.db; did you mean 'quad'? it has: quad")
    assert len(stored(path)) == 2
