"""docker-compose's Dagster services without Docker: the code-server, webserver, daemon and api commands exactly
as docker-compose.yml gives them (listening addresses and ports moved to free loopback ones), with the Dagster
containers' environment and deploy/dagster.yaml, on the embedded services. A workflow submitted to the API runs in
the daemon's warm workers, and its step outputs and compute logs land in the object store."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2
import pytest
import requests
import yaml

from workflow_platform.stack.processes import free_ports

ROOT = Path(__file__).parent.parent
TOKEN = "operator-token-for-the-compose-test"
ORDER = ("code-server", "webserver", "daemon", "api")


def _wait(what: str, ready, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited ({process.returncode}):\n{log.read_text()[-4000:]}")
        if ready():
            return
        time.sleep(0.5)
    pytest.fail(f"{what} not ready in {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def _answers(url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        return requests.get(url, headers=headers, timeout=5).status_code == 200
    except requests.RequestException:
        return False


@contextmanager
def compose_processes(stack_env: dict[str, str], s3, tmp_path: Path) -> Iterator[dict]:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    ports = dict(zip(("code-server", "webserver", "api"), free_ports(3), strict=True))
    compose_ports = {"code-server": "4000", "webserver": "3001", "api": "3000"}
    workspace = tmp_path / "workspace.yaml"
    grpc = {"host": "127.0.0.1", "port": ports["code-server"], "location_name": "workflows"}
    workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": grpc}]}))

    def command(name: str) -> list[str]:
        """The service's command; the executable from this virtualenv, addresses and ports on loopback."""
        words = [
            {"0.0.0.0": "127.0.0.1", "deploy/workspace.yaml": str(workspace)}.get(word, word)
            for word in services[name]["command"]
        ]
        if name in compose_ports:
            words = [str(ports[name]) if word == compose_ports[name] else word for word in words]
        return [str(Path(sys.executable).parent / words[0]), *words[1:]]

    # deploy/dagster.yaml in a Dagster database of its own, and Dagster's bucket
    database = f"dagster_{uuid.uuid4().hex[:8]}"
    with closing(psycopg2.connect(stack_env["WFP_PG_ADMIN_DSN"])) as admin:
        admin.autocommit = True
        admin.cursor().execute(f"CREATE DATABASE {database}")
    url = urlparse(stack_env["WFP_PG_ADMIN_DSN"])
    dagster_url = urlunparse(url._replace(scheme="postgresql+psycopg2", path=f"/{database}"))
    bucket = f"dagster-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(bucket)
    home = tmp_path / "deploy"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    compose_env = services["api"]["environment"]  # the Dagster containers' environment (x-dagster-env)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": dagster_url,
        "WFP_DAGSTER_BUCKET": bucket,
        "WFP_IO_MANAGER": compose_env["WFP_IO_MANAGER"],
        "AWS_ACCESS_KEY_ID": stack_env["WFP_S3_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": stack_env["WFP_S3_SECRET_KEY"],
        "WORKFLOWS_DIR": os.pathsep.join([str(ROOT / "workflows"), str(tmp_path / "submitted")]),
        "WFP_PLUGINS_FILE": str(tmp_path / "submitted" / "plugins.json"),
        "WFP_API_TOKEN": TOKEN,
        "WFP_DAGSTER_UI_URL": f"http://127.0.0.1:{ports['webserver']}",
        "DAGSTER_GRPC_TIMEOUT_SECONDS": compose_env["DAGSTER_GRPC_TIMEOUT_SECONDS"],
    }
    processes: dict[str, subprocess.Popen] = {}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        for name in ORDER:
            log = tmp_path / f"{name}.log"
            with open(log, "w") as output:
                processes[name] = subprocess.Popen(
                    command(name), cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
                )
            if name == "code-server":
                health = [*command(name)[:1], "api", "grpc-health-check", "-h", "127.0.0.1"]
                health += ["-p", str(ports[name])]
                _wait(
                    name,
                    lambda h=health: subprocess.run(h, capture_output=True).returncode == 0,
                    processes[name],
                    log,
                )
            elif name == "webserver":
                url = f"http://127.0.0.1:{ports[name]}/server_info"
                _wait(name, lambda u=url: _answers(u, auth), processes[name], log)
            elif name == "api":
                url = f"http://127.0.0.1:{ports[name]}/api/health"
                _wait(name, lambda u=url: _answers(u), processes[name], log)
        yield {"api": f"http://127.0.0.1:{ports['api']}", "auth": auth, "bucket": bucket, "logs": tmp_path}
    finally:
        for process in reversed(processes.values()):
            process.send_signal(signal.SIGTERM)
        for process in reversed(processes.values()):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_compose_services_run_a_workflow_with_outputs_and_logs_in_the_object_store(stack_env, s3, tmp_path):
    with compose_processes(stack_env, s3, tmp_path) as platform:
        submitted = requests.post(
            f"{platform['api']}/api/workflows/minio-store-workflow/run",
            json={"params": {"count": 20}},
            headers=platform["auth"],
            timeout=60,
        )
        assert submitted.status_code == 201, submitted.text
        run_id = submitted.json()["executionId"]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            execution = requests.get(
                f"{platform['api']}/api/executions/{run_id}", headers=platform["auth"], timeout=30
            ).json()
            if execution["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            time.sleep(0.5)
        logs = {p.name: p.read_text()[-3000:] for p in platform["logs"].glob("*.log")}
        assert execution["status"] == "SUCCESS", (execution, logs)

    objects = {o.object_name for o in s3.list_objects(platform["bucket"], recursive=True)}
    outputs = {Path(name).parent.name for name in objects if name.startswith(f"io/storage/{run_id}/")}
    assert outputs == {"run_pathway", "store_results", "emit_event"}, objects  # one per step (Dagster names)
    assert any(name.startswith(f"compute-logs/storage/{run_id}/") for name in objects), objects


def test_compose_fraud_stream_service_waits_for_a_model_and_passes_its_health_check(stack_env, s3, tmp_path):
    """docker-compose's `fraud-stream` command and health check, its volume moved to tmp_path: the supervisor
    reports that it waits for a model, its health check passes, and SIGTERM stops it (status 0)."""
    from workflow_platform.fraud import NO_MODEL
    from workflow_platform.resources.fraud_stream_control import Status

    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["fraud-stream"]
    volume = service["volumes"][0].split(":", 1)[1]

    def local(words: list[str]) -> list[str]:
        moved = [word.replace(volume, str(tmp_path)) for word in words]
        return [sys.executable if moved[0] == "python" else moved[0], *moved[1:]]

    bucket = f"fraud-stream-{uuid.uuid4().hex[:8]}"  # an object store without a model
    s3.make_bucket(bucket)
    env = os.environ | {"WFP_S3_BUCKET": bucket}
    # A control bucket of its own: the session's NATS is shared with the other tests.
    command = [*local(service["command"]), "--control-bucket", f"compose_{uuid.uuid4().hex[:8]}"]
    health = local(service["healthcheck"]["test"][1:])
    log = tmp_path / "fraud-stream.log"
    with open(log, "w") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        status_file = tmp_path / "status.json"
        _wait("fraud-stream", status_file.exists, process, log, timeout=60)
        status = Status.model_validate_json(status_file.read_text())
        assert status.state == "waiting" and status.detail == NO_MODEL, status
        checked = subprocess.run(health, capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0, log.read_text()[-4000:]
