"""docker/: the files parsed as Docker and Compose read them, and checked against the README
and the repository; where docker and its compose plugin are installed, checked by them too."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from importlib.metadata import metadata
from pathlib import Path

import pytest
import yaml

from hpo.cli import main

ROOT = Path(__file__).parent.parent
DOCKER = ROOT / "docker"


def compose():
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def dockerfile() -> list[tuple[str, list[str]]]:
    """The Dockerfile's instructions as (INSTRUCTION, words), as Docker reads them: comments
    and blank lines dropped, a trailing backslash continuing a line, the JSON (exec) form."""
    instructions, line = [], ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        line += stripped
        if line.endswith("\\"):
            line = line[:-1] + " "
            continue
        keyword, _, arguments = line.partition(" ")
        arguments = arguments.strip()
        words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
        instructions.append((keyword.upper(), words))
        line = ""
    assert not line, "the Dockerfile ends inside a continued line"
    return instructions


def assert_real_command_on_a_shipped_study(arguments: list[str]) -> None:
    command = main.commands[arguments[0]]
    context = command.make_context(arguments[0], arguments[1:], resilient_parsing=True)
    assert (ROOT / context.params["spec_file"]).is_file(), arguments


def dockerignored(path: str) -> bool:
    """Docker's rule: a path is left out of the build context when it, or a folder above it,
    matches a pattern of .dockerignore."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    parts = path.split("/")
    for pattern in patterns:
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            return True
    return False


def worker_build_context() -> Path:
    """The build context compose gives the worker's image (relative to compose.yaml)."""
    return (DOCKER / compose()["services"]["worker"]["build"]["context"]).resolve()


def docker_works(*args: str) -> bool:
    """Whether `docker ARGS` runs here (the command and, for the engine, its daemon)."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", *args], capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def hpo_arguments(service: dict) -> list[str]:
    """The hpo command line a compose service runs."""
    if "entrypoint" in service:
        script = service["entrypoint"][-1].replace("$$", "$")
        words = shlex.split(script.split("exec ", 1)[1])
        env = service.get("environment", {})
        return [env.get(w.strip('"${}').lstrip("$"), w) for w in words[1:]]
    return list(service["command"])


def test_compose_has_database_workers_and_dashboard():
    services = compose()["services"]
    assert set(services) == {"db", "worker", "dashboard"}
    assert services["db"]["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    assert "pgdata" in compose()["volumes"]
    assert services["dashboard"]["ports"] == ["127.0.0.1:8080:8080"]  # loopback only
    for name in ("worker", "dashboard"):
        env = services[name]["environment"]
        assert env["HPO_STORAGE"].startswith("postgresql+psycopg://hpo:${HPO_DB_PASSWORD}@db")


def test_compose_commands_are_real_hpo_commands_on_shipped_studies():
    for name in ("worker", "dashboard"):
        assert_real_command_on_a_shipped_study(hpo_arguments(compose()["services"][name]))
    worker = hpo_arguments(compose()["services"]["worker"])
    assert worker[:2] == ["run", "studies/quickstart.yaml"] and "--worker-id" in worker
    dashboard = hpo_arguments(compose()["services"]["dashboard"])
    assert "--read-only" in dashboard and "0.0.0.0" in dashboard


def test_compose_serves_what_the_readme_promises():
    # README: PostgreSQL with a named volume, workers to scale, a read-only dashboard on
    # loopback, one password from HPO_DB_PASSWORD; `up --build --scale worker=8`.
    services = compose()["services"]
    assert services["db"]["environment"]["POSTGRES_PASSWORD"].startswith("${HPO_DB_PASSWORD:?")
    assert "healthcheck" in services["db"]
    worker, dashboard = services["worker"], services["dashboard"]
    # Scaling to 8 replicas needs no fixed name and no host port on the worker.
    assert "container_name" not in worker and "ports" not in worker
    assert dashboard["image"] == worker["image"]  # the image `--build` builds for the worker
    for service in (worker, dashboard):
        assert service["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert worker["environment"]["HPO_LOCAL_WORKERS"] == "1"  # one worker per container
    assert worker["restart"] == "on-failure"  # as the README says a lost database is met


def test_the_build_context_is_the_repository_with_what_the_image_copies():
    # compose builds from `..` (this repository); the README and the Dockerfile's header
    # build from its root: `docker build -f docker/Dockerfile -t hpo .`
    context = worker_build_context()
    assert context == ROOT.resolve()
    assert (context / compose()["services"]["worker"]["build"]["dockerfile"]).samefile(
        DOCKER / "Dockerfile")
    copies = [words for keyword, words in dockerfile() if keyword == "COPY"]
    assert copies
    for words in copies:
        sources = [w for w in words if not w.startswith("--")][:-1]
        for source in sources:
            assert (context / source).exists(), source
            assert not dockerignored(source), f"{source} is left out by .dockerignore"


def test_dockerignore_keeps_local_databases_and_environments_out_of_the_image():
    for left_out in ("studies/quickstart.db", "studies/quickstart.db-wal",
                     "studies/quickstart.db-shm", "studies/quickstart.hpo-lock",
                     "hpo/__pycache__/cli.cpython-311.pyc", ".venv/bin/python", ".git/HEAD"):
        assert dockerignored(left_out), left_out
    for kept in ("studies/quickstart.yaml", "hpo/cli.py", "pyproject.toml", "README.md"):
        assert not dockerignored(kept), kept


def test_image_installs_as_the_readme_says_and_runs_unprivileged():
    instructions = dockerfile()
    keywords = [keyword for keyword, _ in instructions]
    [base] = [words[0] for keyword, words in instructions if keyword == "FROM"]
    python = re.fullmatch(r"python:(\d+)\.(\d+)-slim", base)
    assert python and (int(python[1]), int(python[2])) >= (3, 10), base  # README: 3.10+
    runs = [words for keyword, words in instructions if keyword == "RUN"]
    # torch first, pinned to the README's version, the CPU build from PyTorch's index.
    pinned = re.search(r"pip install (torch==[\d.]+)", (ROOT / "README.md").read_text())[1]
    [torch] = [i for i, words in enumerate(runs) if pinned in words]
    assert runs[torch][:2] == ["pip", "install"]
    index = runs[torch].index("--index-url")
    assert runs[torch][index + 1] == "https://download.pytorch.org/whl/cpu"
    # Then hpo itself, with the trainer's and the server databases' extras (compose points the
    # workers at PostgreSQL), after its files are copied.
    [own] = [i for i, words in enumerate(runs) if "-e" in words]
    assert torch < own and runs[own][:2] == ["pip", "install"]
    target = runs[own][runs[own].index("-e") + 1]
    extras = re.fullmatch(r"\.\[(.+)\]", target)
    assert extras and {"train", "server"} <= set(extras[1].split(","))
    assert set(extras[1].split(",")) <= set(metadata("hpo").get_all("Provides-Extra"))
    [install_at] = [i for i, (k, words) in enumerate(instructions) if k == "RUN" and "-e" in words]
    copied = {w for k, words in instructions[:install_at] if k == "COPY" for w in words}
    assert {"pyproject.toml", "hpo"} <= copied
    # An unprivileged user, created with the uid the Kubernetes Job runs as.
    [user] = [words for keyword, words in instructions if keyword == "USER"]
    assert user == ["hpo"] and keywords.index("USER") > install_at
    [useradd] = [words for words in runs if words[0] == "useradd"]
    assert useradd[-1] == "hpo"
    job = yaml.safe_load((DOCKER / "k8s-job.yaml").read_text())
    run_as = job["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert useradd[useradd.index("--uid") + 1] == str(run_as)
    # Each container runs `hpo` with a real command on a shipped study.
    [entrypoint] = [words for keyword, words in instructions if keyword == "ENTRYPOINT"]
    [command] = [words for keyword, words in instructions if keyword == "CMD"]
    assert entrypoint == ["hpo"]
    assert_real_command_on_a_shipped_study(command)


def test_docker_compose_reads_the_file_and_needs_the_password():
    if not docker_works("compose", "version"):
        pytest.skip("docker compose is not installed here")
    config = ["docker", "compose", "-f", str(DOCKER / "compose.yaml"), "config", "--format",
              "json"]
    env = {k: v for k, v in os.environ.items() if k != "HPO_DB_PASSWORD"}
    refused = subprocess.run(config, capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode != 0 and "HPO_DB_PASSWORD" in refused.stderr
    done = subprocess.run(config, capture_output=True, text=True, timeout=60,
                          env={**env, "HPO_DB_PASSWORD": "pw"})
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    assert set(services) == {"db", "worker", "dashboard"}
    build = services["worker"]["build"]
    assert Path(build["context"]).resolve() == ROOT.resolve()
    assert (Path(build["context"]) / build["dockerfile"]).samefile(DOCKER / "Dockerfile")
    for name in ("worker", "dashboard"):
        storage = services[name]["environment"]["HPO_STORAGE"]
        assert storage == "postgresql+psycopg://hpo:pw@db:5432/hpo"


def test_docker_checks_the_dockerfile_in_its_build_context():
    if not (docker_works("info") and docker_works("buildx", "version")):
        pytest.skip("no docker engine with buildx here")
    done = subprocess.run(["docker", "build", "--check", "-f", str(DOCKER / "Dockerfile"),
                           str(worker_build_context())],
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr


def test_kubernetes_job_reads_the_url_from_a_secret():
    job = yaml.safe_load((DOCKER / "k8s-job.yaml").read_text())
    spec = job["spec"]
    assert job["kind"] == "Job" and spec["parallelism"] >= 2
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["HPO_STORAGE"]["valueFrom"]["secretKeyRef"] == {"name": "hpo-storage",
                                                                 "key": "url"}
    assert "HPO_WORKER_ID" in env
    assert container["args"][0] in main.commands
    assert (ROOT / container["args"][1]).is_file()
