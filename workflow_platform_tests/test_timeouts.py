"""A step's timeout cancels its work: the step fails at the timeout, and nothing it started keeps running (no
query in PostgreSQL, no connection to the HTTP server, no thread in the process); a retry policy then waits its
delay. Against the session's real services, and real local HTTP servers that are slow on purpose."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from workflow_platform.orchestration.catalog import check_document
from workflow_platform.orchestration.job import build_job
from workflow_platform.resources import NatsResource
from workflow_platform_tests.conftest import fetch
from workflow_platform_tests.test_actions import responder

pytestmark = pytest.mark.usefixtures("stack_env")

BODY_BYTES = 150
ACTIVE_QUERY = (
    "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s AND pid <> pg_backend_pid()"
)
TRICKLE_S = 0.2  # a byte every 0.2 s: no read waits long enough to trip a read timeout, the body takes 30 s


class Trickle(BaseHTTPRequestHandler):
    """Answers 200 at once, then sends its body a byte at a time. Records each request, and sets `hung_up` when
    the client closes the connection before the body is done."""

    protocol_version = "HTTP/1.1"

    def answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(BODY_BYTES))
        self.end_headers()
        try:
            for _ in range(BODY_BYTES):
                self.wfile.write(b" ")
                time.sleep(TRICKLE_S)
        except OSError:  # EPIPE / ECONNRESET: the client hung up
            self.server.hung_up.set()

    do_GET = do_POST = answer  # noqa: N815 - http.server's naming

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.requests, server.hung_up = [], threading.Event()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def execute(document: dict) -> dg.ExecuteInProcessResult:
    spec, problems = check_document(document)
    assert problems == [], [p.render() for p in problems]
    return build_job(spec).execute_in_process(instance=dg.DagsterInstance.get(), raise_on_error=False)


def execute_step(
    step_id: str, plugin: str, action: str, step_input: dict, **settings: object
) -> dg.ExecuteInProcessResult:
    """A workflow of this one step, with its `settings` (timeout, retry), executed."""
    step = {"id": step_id, "plugin": plugin, "action": action, **settings, "input": step_input}
    return execute({"name": f"timeout-{step_id}", "steps": [step]})


def failure_of(result: dg.ExecuteInProcessResult, step: str) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE" and e.step_key == step]
    assert failures, f"step {step} did not fail"
    return failures[-1].event_specific_data.user_failure_data.description


def step_threads(step: str, within_s: float = 1.0) -> list[str]:
    """The threads still running the step's action after `within_s` (translate._interruptible names them
    wfp-<step>_N; one whose action ended exits a moment later)."""
    deadline = time.monotonic() + within_s
    while (names := [t.name for t in threading.enumerate() if t.name.startswith(f"wfp-{step}_")]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    return names


def test_postgres_step_timeout_cancels_the_query(pg):
    marker = f"slept_{uuid.uuid4().hex}"
    started = time.monotonic()
    result = execute_step(
        "sleep", "postgres", "query", {"sql": f"SELECT pg_sleep(30) AS {marker}"}, timeout=1000
    )
    assert not result.success
    message = failure_of(result, "sleep")
    assert "timed out after 1 s" in message or "statement timeout" in message, message
    assert time.monotonic() - started < 15
    deadline = time.monotonic() + 2
    while running := fetch(pg, ACTIVE_QUERY, f"%AS {marker}%"):
        assert time.monotonic() < deadline, f"the query still runs: {running}"
        time.sleep(0.1)
    assert step_threads("sleep") == []


def test_http_step_timeout_aborts_the_request(slow_server, monkeypatch):
    monkeypatch.setenv("WFP_HTTP_ALLOW", f"public,{slow_server.url}")
    result = execute_step("fetch", "http", "request", {"url": f"{slow_server.url}/slow"}, timeout=1000)
    assert not result.success
    assert "step fetch timed out after 1 s" in failure_of(result, "fetch")
    assert slow_server.requests == ["/slow"]
    # The client hung up (the answer had 29 s to go) and no thread is left reading it.
    assert slow_server.hung_up.wait(2), "the request was not aborted: the server is still sending its answer"
    assert step_threads("fetch") == []


def test_pathway_step_timeout_aborts_the_call(slow_server, monkeypatch):
    """The Pathway service has no pipeline that takes long on purpose: the step runs against a local server in its
    place (the resource is an HTTP client of WFP_PATHWAY_URL), one that answers slowly."""
    monkeypatch.setenv("WFP_PATHWAY_URL", slow_server.url)
    pipeline = {"pipelineId": "slow", "input": {"count": 1}}
    result = execute_step("pipeline", "pathway", "runPipeline", pipeline, timeout=1000)
    assert not result.success
    assert "step pipeline timed out after 1 s" in failure_of(result, "pipeline")
    assert slow_server.requests == ["/pipelines/slow/run"]
    assert slow_server.hung_up.wait(2), "the call was not aborted: the server is still sending its answer"
    assert step_threads("pipeline") == []


def test_nats_request_step_times_out_before_its_own_timeout(stack_env):
    subject = f"pricing.quote.{uuid.uuid4().hex[:8]}"
    with responder(stack_env["WFP_NATS_URL"], subject, answer=False) as received:
        started = time.monotonic()
        request = {"subject": subject, "message": {"sku": "A-7"}, "timeoutMs": 30000}
        result = execute_step("quote", "nats", "request", request, timeout=1000)
        elapsed = time.monotonic() - started
    assert not result.success
    assert received == [{"sku": "A-7"}]
    assert "step quote timed out after 1 s" in failure_of(result, "quote")
    assert elapsed < 15
    assert step_threads("quote") == []


def test_nats_resource_cancels_a_request_in_flight(stack_env):
    """What a terminated run relies on (its steps have no timeout of their own): cancel() from another thread ends
    a request that would wait 30 s for its reply."""
    subject = f"pricing.quote.{uuid.uuid4().hex[:8]}"
    resource = NatsResource(url=stack_env["WFP_NATS_URL"])
    outcome: list[BaseException | bytes] = []

    async def ask(client, js) -> bytes:  # noqa: ANN001 - nats-py's Client and JetStreamContext
        return (await client.request(subject, b'{"sku": "A-7"}', timeout=30)).data

    def call() -> None:
        try:
            outcome.append(resource.run(ask))
        except BaseException as error:  # noqa: BLE001 - what the call ended with is the result
            outcome.append(error)

    with responder(stack_env["WFP_NATS_URL"], subject, answer=False) as received:
        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not received:
            assert time.monotonic() < deadline, "the request did not arrive"
            time.sleep(0.05)
        cancelled_at = time.monotonic()
        resource.cancel()
        thread.join(2)
        assert not thread.is_alive(), "the request still waits for its reply"
        assert time.monotonic() - cancelled_at < 2
    assert len(outcome) == 1 and isinstance(outcome[0], BaseException), outcome


def test_a_step_that_times_out_is_retried_after_the_policys_delay(pg):
    marker = f"slept_{uuid.uuid4().hex}"
    query = {"sql": f"SELECT pg_sleep(30) AS {marker}"}
    retry = {"maxAttempts": 2, "delayMs": 1500}
    result = execute_step("sleep", "postgres", "query", query, timeout=500, retry=retry)
    assert not result.success
    assert "timed out" in failure_of(result, "sleep") or "statement timeout" in failure_of(result, "sleep")
    instance = dg.DagsterInstance.get()
    records = instance.all_logs(result.run_id)
    events = [
        (r.dagster_event.event_type_value, r.timestamp)
        for r in records
        if r.dagster_event and r.dagster_event.step_key == "sleep"
    ]
    kinds = [kind for kind, _ in events]
    # Dagster names a retried attempt's start STEP_RESTARTED.
    assert kinds.count("STEP_UP_FOR_RETRY") == 1 and kinds.count("STEP_RESTARTED") == 1, kinds
    up_for_retry = next(t for kind, t in events if kind == "STEP_UP_FOR_RETRY")
    restarted = next(t for kind, t in events if kind == "STEP_RESTARTED")
    assert restarted - up_for_retry >= 1.5, f"retried {restarted - up_for_retry:.2f} s after the failure"
    assert fetch(pg, ACTIVE_QUERY, f"%AS {marker}%") == []


def test_object_store_step_timeout_aborts_the_call(slow_server, monkeypatch):
    """The S3 client is an HTTP client too: a local server slow to send an object stands in for the store."""
    monkeypatch.setenv("WFP_S3_ENDPOINT", slow_server.url)
    result = execute_step("read", "minio", "getObject", {"bucket": "slow", "key": "big.json"}, timeout=1000)
    assert not result.success
    assert "step read timed out after 1 s" in failure_of(result, "read")
    assert [path.split("?")[0] for path in slow_server.requests] == ["/slow/big.json"]
    assert slow_server.hung_up.wait(2), "the call was not aborted: the server is still sending the object"
    assert step_threads("read") == []


def test_an_http_step_that_timed_out_is_retried_with_a_new_connection(slow_server, monkeypatch):
    monkeypatch.setenv("WFP_HTTP_ALLOW", f"public,{slow_server.url}")
    retry = {"maxAttempts": 2, "delayMs": 1000}
    result = execute_step(
        "fetch", "http", "request", {"url": f"{slow_server.url}/slow"}, timeout=500, retry=retry
    )
    assert not result.success
    assert "step fetch timed out after 0.5 s" in failure_of(result, "fetch")
    assert slow_server.requests == ["/slow", "/slow"]  # the cancelled session is not reused
    assert step_threads("fetch") == []
