"""The minio, nats and pathway actions no other test runs, each in a workflow against the real service."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import nats
import pytest
import requests
from minio import Minio
from minio.error import S3Error

from workflow_platform.orchestration.catalog import check_file
from workflow_platform.orchestration.job import build_job

WORKFLOWS = Path(__file__).parent / "fixtures" / "actions"

pytestmark = pytest.mark.usefixtures("stack_env")


def run(workflow: str, **params: object) -> dg.ExecuteInProcessResult:
    spec, problems = check_file(WORKFLOWS / f"{workflow}.json")
    assert problems == [], [p.render() for p in problems]
    run_config = {"resources": {"workflow_params": {"config": params}}} if params else None
    return build_job(spec).execute_in_process(
        run_config=run_config, instance=dg.DagsterInstance.get(), raise_on_error=False
    )


def failure_of(result: dg.ExecuteInProcessResult, step: str) -> str:
    failure = next(
        e for e in result.all_events if e.event_type_value == "STEP_FAILURE" and e.step_key == step
    )
    return failure.event_specific_data.user_failure_data.description


def put(client: Minio, bucket: str, key: str, body: bytes, content_type: str) -> None:
    client.put_object(bucket, key, io.BytesIO(body), len(body), content_type=content_type)


@pytest.fixture
def bucket(stack_env: dict[str, str], s3: Minio) -> str:
    name = stack_env["WFP_S3_BUCKET"]
    if not s3.bucket_exists(name):
        s3.make_bucket(name)
    return name


def test_get_and_list_objects(s3, bucket):
    prefix = f"reads/{uuid.uuid4().hex}"
    report = {"total": 42.5, "regions": ["north", "south"]}
    put(s3, bucket, f"{prefix}/report.json", json.dumps(report).encode(), "application/json")
    put(s3, bucket, f"{prefix}/notes/config.txt", b'{"retries": 3}', "text/plain")
    put(s3, bucket, f"{prefix}/notes/readme.txt", "héllo\nworld".encode(), "text/plain; charset=utf-8")
    put(s3, bucket, f"{prefix}-sibling/other.txt", b"not under the prefix", "text/plain")

    result = run("object-reads", prefix=prefix)
    assert result.success
    # format auto: a JSON object comes back parsed, text as text; format text / json force it
    assert result.output_for_node("report")["data"] == report
    assert json.loads(result.output_for_node("report_as_text")["data"]) == report
    assert result.output_for_node("note_as_json")["data"] == {"retries": 3}
    note = result.output_for_node("note")
    assert (note["data"], note["size"]) == ("héllo\nworld", len("héllo\nworld".encode()))
    # listObjects: what is under the prefix, nothing beside it
    everything = result.output_for_node("everything")
    assert sorted(o["key"] for o in everything["objects"]) == [
        f"{prefix}/notes/config.txt",
        f"{prefix}/notes/readme.txt",
        f"{prefix}/report.json",
    ]
    assert everything["count"] == 3
    assert {o["key"]: o["size"] for o in result.output_for_node("notes")["objects"]} == {
        f"{prefix}/notes/config.txt": 14,
        f"{prefix}/notes/readme.txt": len("héllo\nworld".encode()),
    }


def test_get_object_that_is_missing_or_not_json_fails_the_step(s3, bucket):
    prefix = f"reads/{uuid.uuid4().hex}"
    put(s3, bucket, f"{prefix}/report.json", b"{}", "application/json")
    put(s3, bucket, f"{prefix}/notes/config.txt", b"retries = 3", "text/plain")
    result = run("object-reads", prefix=prefix)
    assert not result.success
    assert "is not JSON" in failure_of(result, "note_as_json")
    assert f"object s3://{bucket}/{prefix}/notes/readme.txt does not exist" in failure_of(result, "note")
    assert result.output_for_node("report")["data"] == {}  # independent steps still ran


def test_delete_object(s3, bucket):
    key = f"deletes/{uuid.uuid4().hex}.json"
    put(s3, bucket, key, b'{"stale": true}', "application/json")
    result = run("object-delete", key=key)
    assert result.success
    assert result.output_for_node("left")["objects"] == []
    with pytest.raises(S3Error) as missing:
        s3.stat_object(bucket, key)
    assert missing.value.code == "NoSuchKey"


def test_presigned_url_gives_the_object_until_it_expires(s3, bucket):
    key = f"shared/{uuid.uuid4().hex}.csv"
    put(s3, bucket, key, b"day,revenue\n2025-10-31,1200\n", "text/csv")
    result = run("object-share", key=key, expires=3)
    signed_by = time.monotonic()  # the URL was signed during the run: it expires before signed_by + 3 s
    assert result.success
    url = result.output_for_node("link")["url"]
    fetched = requests.get(url, timeout=10)  # a plain HTTP client, no credentials
    assert fetched.status_code == 200 and fetched.content == b"day,revenue\n2025-10-31,1200\n"
    time.sleep(max(0.0, signed_by + 4 - time.monotonic()))
    refused = requests.get(url, timeout=10)
    assert refused.status_code == 403 and b"expired" in refused.content.lower()


@contextlib.contextmanager
def responder(nats_url: str, subject: str, answer: bool = True) -> Iterator[list[dict]]:
    """A service on `subject` in a background thread: it records each request and, if `answer`, replies with a
    price for it. Yields the requests it received."""
    received: list[dict] = []
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        client = await nats.connect(nats_url)

        async def handle(message: nats.aio.msg.Msg) -> None:
            request = json.loads(message.data)
            received.append(request)
            if answer:
                await message.respond(
                    json.dumps({"sku": request["sku"], "price": 2.5 * request["units"]}).encode()
                )

        await client.subscribe(subject, cb=handle)
        await client.flush()
        ready.set()
        await stop.wait()
        await client.drain()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the responder did not subscribe"
    try:
        yield received
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_nats_request_gets_the_responders_reply(stack_env):
    subject = f"pricing.quote.{uuid.uuid4().hex[:8]}"
    with responder(stack_env["WFP_NATS_URL"], subject) as received:
        result = run("nats-request", subject=subject)
    assert result.success
    assert received == [{"sku": "A-7", "units": 3}]
    assert result.output_for_node("quote") == {"subject": subject, "data": {"sku": "A-7", "price": 7.5}}


def test_nats_request_without_a_reply_times_out(stack_env):
    subject = f"pricing.quote.{uuid.uuid4().hex[:8]}"
    with responder(stack_env["WFP_NATS_URL"], subject, answer=False) as received:
        result = run("nats-request", subject=subject, timeoutMs=500)
    assert not result.success
    assert received == [{"sku": "A-7", "units": 3}]  # the request arrived; no reply came
    assert f"TimeoutError: no reply on {subject} within 500 ms" in failure_of(result, "quote")


def test_pathway_health_and_pipelines(stack_env):
    result = run("pathway-service")
    assert result.success
    service = stack_env["WFP_PATHWAY_URL"]
    health = result.output_for_node("health")
    assert health["status"] == "ok" and "sample-pipeline" in health["pipelines"]
    pipelines = {p["id"]: p for p in result.output_for_node("pipelines")["pipelines"]}
    assert set(pipelines) == set(health["pipelines"])
    assert "count" in pipelines["sample-pipeline"]["input"]["properties"]
    assert result.output_for_node("pipelines") == requests.get(f"{service}/pipelines", timeout=10).json()
