"""The API while its PostgreSQL is down: every route that needs the database answers 503 "PostgreSQL is not
reachable; retry" with Retry-After (never a 500), and once PostgreSQL is back on the same port the very next
requests answer as before: no stale pooled connection fails them.

The platform here has a PostgreSQL of its own (the session's is shared by the other tests): `wfp up` on it and
on the session's NATS, S3 and Pathway."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
import requests

from workflow_platform.instance.database import IDLE_PING_S
from workflow_platform.stack import pg_server
from workflow_platform.stack.processes import ServiceHandle
from workflow_platform_tests.conftest import running_platform, wait_for

WORKFLOW = "minio-store-workflow"
QUERYING = {  # its SQL is planned (EXPLAIN) on PostgreSQL before the run is launched
    "name": "outage-query",
    "steps": [{"id": "count", "plugin": "postgres", "action": "query", "input": {"sql": "SELECT 1 AS one"}}],
}


def pg_ctl(handle: ServiceHandle, *args: str) -> None:
    """The bundled pg_ctl on the handle's data dir (as the server's system user under root)."""
    data_dir = Path(handle.data_dir or "")
    pg_server._run("pg_ctl", ["-D", str(data_dir), *args], data_dir, Path(handle.log))  # noqa: SLF001


def start_postgres(handle: ServiceHandle) -> None:
    """Start it again on its data dir and port, as the stack started it."""
    pg_server._start_server(Path(handle.data_dir or ""), handle.ports["tcp"], Path(handle.log))  # noqa: SLF001


@pytest.fixture(scope="module")
def outage(stack_env, tmp_path_factory) -> Iterator[dict]:
    from workflow_platform.stack import EmbeddedStack

    with (
        EmbeddedStack(tmp_path_factory.mktemp("outage_stack"), services=("postgres",)) as stack,
        pytest.MonkeyPatch.context() as env,
    ):
        handle = stack.handles["postgres"]
        for name, value in handle.env.items():  # WFP_PG_DSN and WFP_PG_ADMIN_DSN
            env.setenv(name, value)
        env.delenv("DAGSTER_PG_URL", raising=False)  # the platform's instance goes on this PostgreSQL too
        try:
            with running_platform(tmp_path_factory.mktemp("outage_up")) as running:
                yield {**running, "postgres": handle}
        finally:
            # The server started again has another pid than the handle's: stop it by its data dir.
            with suppress(Exception):
                pg_ctl(handle, "-m", "fast", "-w", "-t", "30", "stop")


def launch(api: str) -> requests.Response:
    return requests.post(f"{api}/api/workflows/{WORKFLOW}/run", json={"params": {"count": 5}}, timeout=60)


def assert_unavailable(response: requests.Response, route: str) -> None:
    assert response.status_code == 503, (route, response.status_code, response.text)
    body = response.json()
    assert body["error"] == "service_unavailable", (route, body)
    assert "PostgreSQL is not reachable" in body["message"] and "retry" in body["message"], (route, body)
    assert int(response.headers["Retry-After"]) > 0, route


def test_api_answers_503_while_postgres_is_down_and_recovers_by_itself(outage):
    api = outage["api"]
    launched = launch(api)
    assert launched.status_code == 201, launched.text
    first = launched.json()["executionId"]
    execution = wait_for(api, first)
    assert execution["status"] == "SUCCESS", json.dumps(execution, indent=1)
    assert requests.get(f"{api}/api/executions", timeout=30).status_code == 200  # the pool holds connections

    pg_ctl(outage["postgres"], "-m", "fast", "-w", "-t", "30", "stop")
    try:
        assert_unavailable(requests.get(f"{api}/api/executions", timeout=60), "GET /api/executions")
        assert_unavailable(
            requests.get(f"{api}/api/executions/{first}", timeout=60), "GET /api/executions/{id}"
        )
        assert_unavailable(launch(api), "POST /api/workflows/{name}/run")
        assert_unavailable(requests.get(f"{api}/api/stats", timeout=60), "GET /api/stats")
        assert_unavailable(requests.get(f"{api}/metrics", timeout=60), "GET /metrics")
        keyed = requests.post(
            f"{api}/api/workflows/{WORKFLOW}/run",
            json={},
            headers={"Idempotency-Key": "outage-1"},
            timeout=60,
        )
        assert_unavailable(keyed, "POST /api/workflows/{name}/run with Idempotency-Key")
        # Submitting checks the workflow's tables and SQL on PostgreSQL first: an outage is no problem of the
        # workflow's (a 400), it is a 503.
        submitted = requests.post(f"{api}/api/workflows", json=QUERYING, timeout=60)
        assert_unavailable(submitted, "POST /api/workflows")
        # Routes that do not need the database still answer.
        assert requests.get(f"{api}/api/workflows", timeout=60).status_code == 200
    finally:
        start_postgres(outage["postgres"])

    listed = requests.get(f"{api}/api/executions", timeout=60)
    assert listed.status_code == 200, listed.text
    assert first in [item["executionId"] for item in listed.json()["items"]]
    assert requests.get(f"{api}/api/executions/{first}", timeout=60).status_code == 200
    again = launch(api)
    assert again.status_code == 201, again.text
    execution = wait_for(api, again.json()["executionId"], timeout=180)
    assert execution["status"] == "SUCCESS", json.dumps(execution, indent=1)


def test_a_restart_no_request_saw_fails_no_request_after_it(outage):
    """PostgreSQL restarts between two requests: every connection the API pooled is dead, and none of the next
    requests may fail on one (each is checked before use once it has sat idle)."""
    api = outage["api"]
    for _ in range(3):  # several connections in the pool
        assert requests.get(f"{api}/api/executions", timeout=30).status_code == 200
    pg_ctl(outage["postgres"], "-m", "fast", "-w", "-t", "30", "stop")
    start_postgres(outage["postgres"])
    # The bound: a connection used less than IDLE_PING_S ago is trusted without a ping (a restart takes longer).
    time.sleep(IDLE_PING_S)
    answers = [requests.get(f"{api}/api/executions", timeout=60) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
