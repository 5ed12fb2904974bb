"""Session fixtures: the real services (embedded stack) started once, and helpers to look at what they hold."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import nats
import psycopg2
import pytest
import requests
from minio import Minio

from workflow_platform.settings import ENDPOINT_VARIABLES

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).parent.parent
UI_JOBS = """
{
  repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name description tags { key value } } } } }
}"""


def graphql(ui: str, query: str, variables: dict | None = None) -> dict:
    """A query to the Dagster webserver's GraphQL (what its pages ask)."""
    response = requests.post(f"{ui}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    response.raise_for_status()
    return response.json()["data"]


def ui_jobs(ui: str) -> dict[str, dict]:
    """The jobs the UI lists, less the hidden one Dagster adds for the declared assets (__ASSET_JOB)."""
    nodes = graphql(ui, UI_JOBS)["repositoriesOrError"]["nodes"]
    return {job["name"]: job for node in nodes for job in node["jobs"] if not job["name"].startswith("__")}


def wait_for_ui_job(ui: str, name: str, timeout: float = 120.0) -> None:
    """The API reloads the UI's code location in the background after a new workflow (its run does not wait
    for it): wait until the UI lists the job, as a user would reload the page."""
    deadline = time.monotonic() + timeout
    while name not in ui_jobs(ui):
        assert time.monotonic() < deadline, f"the Dagster UI never listed job {name}"
        time.sleep(0.5)


def wfp(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`wfp <args>` as a user types it at the repository root, in a process of its own (env: this process's
    environment unless given)."""
    return subprocess.run(
        [sys.executable, "-m", "workflow_platform.cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


CHROMIUM_FLAGS = [
    *("--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking"),
    *("--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--no-first-run"),
]


@contextlib.contextmanager
def dagster_ui_page(chromium: str, url: str, viewport: dict[str, int]) -> Iterator[Page]:
    """A Chromium page opened on `url` of a Dagster UI, past the newsletter dialog of a first visit."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport=viewport)
        page.goto(url, wait_until="networkidle")
        with contextlib.suppress(PlaywrightTimeout):  # the dialog shows on a first visit only
            page.get_by_role("button", name="Skip").click(timeout=15_000)
        yield page
        browser.close()


def require_tool(*names: str) -> str:
    """The path of the first of `names` on PATH. Missing: the test fails in CI (`CI` set, as `.ci/run` does,
    which installs these tools first) and is skipped elsewhere, with the reason pytest reports (`-rs`)."""
    for name in names:
        if path := shutil.which(name):
            return path
    reason = f"{' or '.join(names)} is not installed (Debian package {names[0]})"
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason}: CI needs it (.ci/tools installs it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Start PostgreSQL, NATS JetStream, the S3 server and the Pathway service; export their WFP_* variables."""
    from workflow_platform.stack import SERVICES, EmbeddedStack

    saved = dict(os.environ)
    for name in ENDPOINT_VARIABLES:
        os.environ.pop(name, None)
    # Without the fraud stream's supervisor: the tests run theirs, each on its own subjects and control bucket.
    services = [name for name in SERVICES if name != "fraud-stream"]
    with EmbeddedStack(tmp_path_factory.mktemp("stack"), services=services) as stack:
        os.environ.update(stack.env)
        os.environ["DAGSTER_HOME"] = str(tmp_path_factory.mktemp("dagster_home"))
        Path(os.environ["DAGSTER_HOME"], "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        try:
            yield stack.env
        finally:
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture
def pg(stack_env: dict[str, str]) -> Iterator[psycopg2.extensions.connection]:
    """The platform's admin connection: tests set up tables and look at what workflows did (steps connect as
    the workflows' role, WFP_PG_DSN)."""
    connection = psycopg2.connect(stack_env["WFP_PG_ADMIN_DSN"])
    connection.autocommit = True
    yield connection
    connection.close()


def grant_to_workflows(
    connection: psycopg2.extensions.connection, table: str, privileges: str = "SELECT, INSERT, UPDATE, DELETE"
) -> None:
    """What an owner does for a table of their own that workflows use: steps connect as the workflows' role,
    which has privileges on the platform's schemas only."""
    from psycopg2 import sql

    from workflow_platform.stack.pg_access import WORKFLOWS_ROLE

    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("GRANT {} ON {} TO {}").format(
                sql.SQL(privileges), sql.Identifier(*table.split(".")), sql.Identifier(WORKFLOWS_ROLE)
            )
        )


def evaluate_sensor(
    sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None = None
) -> dg.SensorResult:
    """One tick of the sensor from `cursor`, with the resources the code location binds (definitions.py)."""
    from workflow_platform.resources import service_resources

    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=service_resources()) as context:
        return sensor.evaluate_tick(context)


def fetch(connection: psycopg2.extensions.connection, query: str, *params: object) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query, params or None)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def s3(stack_env: dict[str, str]) -> Minio:
    endpoint = stack_env["WFP_S3_ENDPOINT"].split("://", 1)[1]
    return Minio(
        endpoint,
        access_key=stack_env["WFP_S3_ACCESS_KEY"],
        secret_key=stack_env["WFP_S3_SECRET_KEY"],
        secure=False,
        region=stack_env["WFP_S3_REGION"],
    )


def read_json_object(client: Minio, bucket: str, key: str) -> object:
    from workflow_platform.resources.s3_client import read_object

    return json.loads(read_object(client, bucket, key)[0])


def stream_messages(nats_url: str, stream: str, subject: str) -> list[tuple[int, dict, dict]]:
    """Every message of a JetStream stream on a subject: (sequence, headers, JSON body)."""

    async def read() -> list[tuple[int, dict, dict]]:
        client = await nats.connect(nats_url)
        try:
            js = client.jetstream()
            info = await js.stream_info(stream)
            messages = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    message = await js.get_msg(stream, seq)
                except nats.js.errors.NotFoundError:
                    continue
                if message.subject == subject:
                    messages.append((seq, dict(message.headers or {}), json.loads(message.data)))
            return messages
        finally:
            await client.drain()

    return asyncio.run(read())


@contextlib.contextmanager
def running_platform(home: Path, launcher: str = "warm", env: dict[str, str] | None = None) -> Iterator[dict]:
    """`wfp up` on the session's services with WFP_HOME=home, stopped with Ctrl-C (SIGINT) afterwards: it must
    exit 0 having said it stopped, and its API must be gone."""
    from workflow_platform.cli.up import start_platform_process
    from workflow_platform.stack.processes import free_ports

    port, dagster_port = free_ports(2)
    environment = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | (env or {})
    try:
        process = start_platform_process(home, port, dagster_port, environment, launcher=launcher)
    except RuntimeError as error:
        pytest.fail(str(error))
    api = f"http://127.0.0.1:{port}"
    try:
        yield {
            "api": api,
            "dagster": f"http://127.0.0.1:{dagster_port}",
            "dagster_port": dagster_port,
            "home": home,
        }
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=90) == 0
    assert "stopped" in (home / "up.log").read_text()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{api}/api/health", timeout=2)


def wait_for(api: str, execution_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        execution = requests.get(f"{api}/api/executions/{execution_id}", timeout=30).json()
        if execution["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return execution
        time.sleep(0.5)
    raise AssertionError(f"execution {execution_id} did not finish: {execution}")


def demo_workflow(name: str = "api-demo") -> dict:
    return {
        "name": name,
        "description": "submitted over HTTP",
        "params": {"count": {"type": "integer", "default": 25}},
        "steps": [
            {
                "id": "compute",
                "plugin": "pathway",
                "action": "runPipeline",
                "input": {"pipelineId": "sample-pipeline", "input": {"count": "{{ params.count }}"}},
            },
            {
                "id": "store",
                "plugin": "minio",
                "action": "putObject",
                "needs": ["compute"],
                "input": {"key": "api/{{ run.id }}.json", "data": "{{ steps.compute.result }}"},
            },
            {
                "id": "log",
                "plugin": "postgres",
                "action": "insert",
                "needs": ["store"],
                "input": {
                    "table": "orchestrator.events",
                    "data": {"event_type": "api_demo", "data": {"run": "{{ run.id }}"}},
                },
            },
        ],
    }
