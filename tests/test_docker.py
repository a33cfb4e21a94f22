"""docker/ cannot run here (no engine); check what can be: it parses and names real things."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from hpo.cli import main

ROOT = Path(__file__).parent.parent
DOCKER = ROOT / "docker"


def compose():
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


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
        arguments = hpo_arguments(compose()["services"][name])
        command = main.commands[arguments[0]]
        context = command.make_context(arguments[0], arguments[1:], resilient_parsing=True)
        assert (ROOT / context.params["spec_file"]).is_file()
    worker = hpo_arguments(compose()["services"]["worker"])
    assert worker[:2] == ["run", "studies/quickstart.yaml"] and "--worker-id" in worker
    dashboard = hpo_arguments(compose()["services"]["dashboard"])
    assert "--read-only" in dashboard and "0.0.0.0" in dashboard


def test_image_installs_as_the_readme_says_and_runs_unprivileged():
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"pip install .*torch==2\.13\.0", text)
    assert 'pip install --no-cache-dir -e ".[train,server]"' in text
    assert re.search(r"^USER hpo$", text, re.M)
    for source in re.findall(r"^COPY (?:--chown=\S+ )?(.+) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), path


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
