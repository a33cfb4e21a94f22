from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

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

HPO = shutil.which("hpo") or os.path.join(os.path.dirname(sys.executable), "hpo")

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str,
               interval: float = 0.05) -> T:
    """Poll `condition` until it returns something true, and return that; fail the test,
    saying `what` it waited for, if `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {what}", pytrace=False)
        time.sleep(interval)
    return result


def study_yaml(name: str = "quad", *, n_trials: int | None = 10, function: str = "objective",
               trainer: str | None = None, sampler: str | None = None,
               direction: str | None = None, metric: str | None = None,
               space: str = "x: {type: float, low: -5.0, high: 5.0}", extra: str = "") -> str:
    """A study file's text. The objective is `function` in objective.py (a `module:function`
    or `file.py:function` target where it has a colon), or the built-in trainer with the
    `trainer` lines (data, model, train). `space` holds the search_space's entries and `extra`
    more top-level fields, as YAML lines of one indentation each; fields left None are left
    out (their defaults apply). The search space comes last: appending lines adds entries.
    """
    fields = {"name": name, "direction": direction, "metric": metric, "n_trials": n_trials,
              "sampler": sampler}
    head = "".join(f"{key}: {value}\n" for key, value in fields.items() if value is not None)
    if trainer is None:
        target = function if ":" in function else f"objective.py:{function}"
        head += f'objective: {{callable: "{target}"}}\n'
    else:
        head += "objective:\n  trainer: mlp\n"
        head += textwrap.indent(textwrap.dedent(trainer).strip(), "  ") + "\n"
    if extra.strip():
        head += textwrap.dedent(extra).strip() + "\n"
    entries = textwrap.indent(textwrap.dedent(space).strip(), "  ")
    return f"{head}search_space:\n{entries}\n"


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


# Worker tests' objective: it takes as long as the study's metric name says (sleep_0.5).
SLEEPY = '''
import time


def objective(trial):
    time.sleep(float(trial.study.user_attrs["hpo_spec"]["metric"].split("_")[1]))
    return trial.params["x"]
'''


def sleepy_study(folder: Path, n_trials: int, sleep: float, extra: str = "",
                 sampler: str = "{type: random, seed: 0}",
                 space: str = "x: {type: float, low: 0.0, high: 1.0}") -> tuple[Path, str]:
    """A study of its own name (t-..., removed after server tests) whose trials each take
    `sleep` seconds; returns its file and name."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    body = study_yaml(name, metric=f"sleep_{sleep}", n_trials=n_trials, sampler=sampler,
                      extra=extra, space=space)
    return write_study(folder, body, objective=SLEEPY), name


def start_workers(path: Path, url: str, count: int, label: str | None = None,
                  extra: tuple[str, ...] | list[str] = ()) -> list[subprocess.Popen]:
    """`count` workers started as the README says: `hpo run study.yaml`, the URL in the env."""
    env = {**os.environ, "HPO_STORAGE": url}
    labels = ["--worker-id", label] if label else []
    return [subprocess.Popen([HPO, "run", str(path), "-q", *labels, *extra], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(count)]


def wait_all(workers: list[subprocess.Popen], timeout: float = 180
             ) -> list[tuple[int, str, str]]:
    """Each worker's (exit code, stdout, stderr), once it has ended; on a timeout, every
    worker is killed before the test fails, so none is left running."""
    outputs = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=timeout)
            outputs.append((worker.returncode, out, err))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=30)
    return outputs


def trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, read with plain Optuna; none before a worker has created it."""
    try:
        return optuna.load_study(study_name=name, storage=url).trials
    except KeyError:
        return []


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


@pytest.fixture(scope="session", autouse=True)
def own_server_databases():
    """The servers are shared (other runs, other sessions): this run works in databases of its
    own, one per server, made here and dropped at the end, and the URL variables point the
    tests and their worker processes at them."""
    from sqlalchemy import create_engine, make_url, text

    made = []
    for variable in SERVER_URL_VARIABLES.values():
        url = os.environ.get(variable)
        if not url:
            continue
        name = f"hpo_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:  # set but unreachable: the run fails here
            connection.execute(text(f"CREATE DATABASE {name}"))
        own = make_url(url).set(database=name).render_as_string(hide_password=False)
        os.environ[variable] = own
        made.append((variable, url, admin, name))
    yield
    for variable, url, admin, name in made:
        os.environ[variable] = url
        with admin.connect() as connection:
            if admin.dialect.name == "postgresql":  # FORCE: ends what a test left connected
                connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:  # MySQL would wait on a leaked connection's lock: end those first
                leaked = connection.execute(text(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = :db"), {"db": name})
                for (pid,) in leaked.fetchall():
                    connection.execute(text(f"KILL {int(pid)}"))
                connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def server_url(kind: str) -> str:
    """The test server's URL for `kind` (postgresql, mysql); the test skips when it is unset."""
    url = os.environ.get(SERVER_URL_VARIABLES[kind])
    if not url:
        pytest.skip(f"{SERVER_URL_VARIABLES[kind]} is not set")
    return url


def kill_on_server(connection) -> None:
    """Kill a PostgreSQL or MySQL connection from the server side, as an admin or a server
    restart would; returns once the server has ended it."""
    from sqlalchemy import create_engine, text

    postgres = connection.engine.dialect.name == "postgresql"
    own = "pg_backend_pid()" if postgres else "CONNECTION_ID()"
    pid = connection.execute(text(f"SELECT {own}")).scalar()
    kill = f"SELECT pg_terminate_backend({pid})" if postgres else f"KILL {pid}"
    listed = (f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}" if postgres
              else f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {pid}")
    admin = create_engine(connection.engine.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(kill))

        def gone() -> bool:
            with admin.connect() as c:
                return c.execute(text(listed)).scalar() == 0

        wait_until(gone, 10, f"the server to end connection {pid}")
    finally:
        admin.dispose()


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

    from hpo.store.optuna_compat import ClaimingStudy
    from hpo.store.storage import dispose, open_storage

    storage = open_storage(storage_url)
    name = f"t-{uuid.uuid4().hex[:12]}"
    optuna.create_study(study_name=name, storage=storage)
    yield ClaimingStudy(study_name=name, storage=storage)
    dispose(storage)
