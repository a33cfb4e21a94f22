from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from hpo.errors import DataError, ObjectiveImportError
from hpo.spec import load_spec
from hpo.worker.objective import check_objective, load_callable
from tests.conftest import assert_one_line, cli, load, study_yaml

STUDIES = Path(__file__).parents[2] / "studies"


def spec_with(tmp_path, target, files=None):
    for name, text in (files or {}).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    study = tmp_path / "study.yaml"
    study.write_text(study_yaml(n_trials=2, function=target,
                                space="x: {type: float, low: 0.0, high: 1.0}"))
    return load_spec(study)


def test_file_path_relative_to_the_study_file(tmp_path):
    files = {"sub/train.py": "def run(trial):\n    return 1.5\n"}
    spec = spec_with(tmp_path, "sub/train.py:run", files)
    assert load_callable(spec)(None) == 1.5


def test_module_beside_the_study_file(tmp_path):
    spec = spec_with(tmp_path, "mypkg.train:objective", {
        "mypkg/__init__.py": "",
        "mypkg/train.py": "def objective(trial):\n    return trial.params['x'] * 2\n",
    })
    result = cli("run", spec.source, "-q")
    assert result.exit_code == 0, result.output
    trials = load(spec.source).trials
    assert [t.value for t in trials] == pytest.approx([t.params["x"] * 2 for t in trials])


def test_installed_module(tmp_path):
    spec = spec_with(tmp_path, "os.path:basename")
    import os.path

    assert load_callable(spec) is os.path.basename


@pytest.mark.parametrize(("target", "files", "fragments"), [
    ("missing_pkg.train:objective", {},
     ["objective.callable: cannot import module 'missing_pkg.train'",
      "no module named 'missing_pkg'", "'path/to/file.py:function'"]),
    ("nowhere.py:objective", {},
     ["no such file", "nowhere.py", "relative to the study file"]),
    ("train.py:objectiv", {"train.py": "def objective(trial):\n    return 1.0\n"},
     ["'train.py' has no function 'objectiv'", "did you mean 'objective'"]),
    ("train.py:objective", {"train.py": "def objective(trial)\n    return 1.0\n"},
     ["importing", "train.py", "failed: SyntaxError", "(line 1)"]),
    ("train.py:objective", {"train.py": "import not_a_real_dependency\n"},
     ["failed: ModuleNotFoundError: No module named 'not_a_real_dependency'"]),
    ("train.py:VALUE", {"train.py": "VALUE = 3\n"}, ["train.py:VALUE is not callable"]),
])
def test_import_errors_are_one_line(tmp_path, target, files, fragments):
    spec = spec_with(tmp_path, target, files)
    with pytest.raises(ObjectiveImportError) as raised:
        load_callable(spec)
    assert_one_line(str(raised.value), f"{spec.source}: objective.callable", fragments)


def test_import_error_touches_no_database(tmp_path):
    spec = spec_with(tmp_path, "missing_pkg:objective")
    result = cli("run", spec.source, "-q")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert not (tmp_path / "quad.db").exists()


def test_objective_sees_every_parameter_and_may_suggest_more(tmp_path):
    spec = spec_with(tmp_path, "train.py:objective", {"train.py": """
        def objective(trial):
            assert set(trial.params) == {"x"}
            y = trial.suggest_int("y", 1, 3)
            return trial.params["x"] + y
    """})
    assert cli("run", spec.source, "-q").exit_code == 0
    for trial in load(spec.source).trials:
        assert set(trial.params) == {"x", "y"}
        assert trial.value == pytest.approx(trial.params["x"] + trial.params["y"])


def test_conditional_entries(tmp_path):
    (tmp_path / "train.py").write_text("def objective(trial):\n    return 1.0\n")
    study = tmp_path / "study.yaml"
    study.write_text(textwrap.dedent("""
        name: quad
        n_trials: 20
        sampler: {type: random, seed: 0}
        objective: {callable: "train.py:objective"}
        search_space:
          momentum: {type: float, low: 0.5, high: 0.99, when: {optimizer: [sgd]}}
          optimizer: {type: categorical, choices: [sgd, adam]}
    """))
    assert cli("run", study, "-q").exit_code == 0
    trials = load(study).trials
    assert {t.params["optimizer"] for t in trials} == {"sgd", "adam"}
    for trial in trials:
        assert ("momentum" in trial.params) == (trial.params["optimizer"] == "sgd")


def test_the_launchers_check_of_a_trainer_imports_neither_torch_nor_the_dataset(tmp_path):
    shutil.copy(STUDIES / "quickstart.yaml", tmp_path)
    probe = (
        "import sys\n"
        "from hpo.worker.objective import check_objective\n"
        "from hpo.spec import load_spec\n"
        f"check_objective(load_spec({str(tmp_path / 'quickstart.yaml')!r}))\n"
        "print('torch' in sys.modules, 'sklearn' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_the_launchers_check_finds_a_missing_data_file(tmp_path):
    data = yaml.safe_load((STUDIES / "wine-csv.yaml").read_text())
    path = tmp_path / "wine-csv.yaml"
    path.write_text(yaml.safe_dump(data))  # without wine.csv beside it
    with pytest.raises(DataError) as raised:
        check_objective(load_spec(path))
    assert_one_line(str(raised.value), str(path), ["objective.data.path", "wine.csv"])
