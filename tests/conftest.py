from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from hpo.cli import main

# An objective file most tests share: a quadratic with optional reports and failures.
QUADRATIC = '''
import math
import optuna


def objective(trial):
    x = trial.params["x"]
    return (x - 2.0) ** 2


def reporting(trial):
    x = trial.params["x"]
    for step in range(5):
        trial.report((x - 2.0) ** 2 + 1.0 / (step + 1), step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return (x - 2.0) ** 2


def maximize(trial):
    return -((trial.params["x"] - 2.0) ** 2)


def failing(trial):
    raise RuntimeError("the objective is broken")
'''

SERVER_URL_VARIABLES = {"postgresql": "HPO_TEST_POSTGRES_URL", "mysql": "HPO_TEST_MYSQL_URL"}


def write_study(folder: Path, body: str, objective: str = QUADRATIC, name: str = "study.yaml"):
    """A study file (and its objective file, objective.py) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "objective.py").write_text(objective)
    path = folder / name
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def cli(*args: str, env: dict[str, str] | None = None):
    """Run `hpo ARGS` in-process; returns click's Result (output, exit_code)."""
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def assert_one_line(message: str, prefix: str, fragments: list[str]) -> None:
    """An error message is one line, starts with `prefix`, and says each fragment."""
    assert "\n" not in message
    assert message.startswith(prefix)
    for fragment in fragments:
        assert fragment in message


def load(path: Path, name: str = "quad") -> optuna.Study:
    """The study a test's run wrote, opened with plain Optuna."""
    return optuna.load_study(study_name=name, storage=f"sqlite:///{path.parent / name}.db")


def _children(pid: int) -> list[int]:
    """Every live descendant process of `pid` (from /proc, where there is one)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            child = int(entry.parent.name)
            found += [child, *_children(child)]
    return found


@pytest.fixture(autouse=True)
def _no_process_left_behind():
    # A test that fails or times out (pytest-timeout) must not leave workers running.
    yield
    for pid in _children(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(autouse=True)
def _no_inherited_storage(monkeypatch):
    # A developer's HPO_STORAGE must not send test studies to a shared database.
    monkeypatch.delenv("HPO_STORAGE", raising=False)


def server_url(kind: str) -> str:
    """The test server's URL for `kind` (postgresql, mysql); the test skips when it is unset."""
    url = os.environ.get(SERVER_URL_VARIABLES[kind])
    if not url:
        pytest.skip(f"{SERVER_URL_VARIABLES[kind]} is not set")
    return url


@pytest.fixture
def postgres_proxy():
    """PostgreSQL behind a loopback proxy a test can cut: (direct URL, proxy, proxied URL)."""
    from tests.proxy import CuttableProxy

    url = server_url("postgresql")
    proxy, proxied = CuttableProxy.in_front_of(url)
    yield url, proxy, proxied
    proxy.close()


def storage_urls(tmp_path: Path) -> dict[str, str]:
    """sqlite always; PostgreSQL and MySQL when their URLs are set in the environment."""
    urls = {"sqlite": f"sqlite:///{tmp_path / 'storage.db'}"}
    for name, variable in SERVER_URL_VARIABLES.items():
        if os.environ.get(variable):
            urls[name] = os.environ[variable]
    return urls


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def storage_url(request, tmp_path):
    """A storage URL for each backend; server backends skip when their URL is unset."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'storage.db'}"
        return
    variable = SERVER_URL_VARIABLES[request.param]
    url = os.environ.get(variable)
    if not url:
        pytest.skip(f"{variable} is not set")
    yield url
    # Each test uses study names of its own; remove them so reruns start clean.
    storage = optuna.storages.RDBStorage(url)
    for summary in optuna.get_all_study_summaries(storage):
        if summary.study_name.startswith("t-"):
            optuna.delete_study(study_name=summary.study_name, storage=storage)
    storage.engine.dispose()


@pytest.fixture
def claiming(storage_url):
    """A new, empty study on each backend, opened as hpo opens it (a ClaimingStudy)."""
    import uuid

    from hpo.optuna_compat import ClaimingStudy
    from hpo.storage import dispose, open_storage

    storage = open_storage(storage_url)
    name = f"t-{uuid.uuid4().hex[:12]}"
    optuna.create_study(study_name=name, storage=storage)
    yield ClaimingStudy(study_name=name, storage=storage)
    dispose(storage)
