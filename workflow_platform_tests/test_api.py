"""`wfp up` as a subprocess: the HTTP API on top of Dagster's webserver and daemon, against the real services."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from workflow_platform_tests.conftest import (
    dagster_ui_page,
    demo_workflow,
    fetch,
    read_json_object,
    require_tool,
    running_platform,
    wait_for,
    wait_for_ui_job,
)
from workflow_platform_tests.test_cli import BAD_INPUTS, digest

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def platform(stack_env, tmp_path_factory) -> Iterator[dict]:
    with running_platform(tmp_path_factory.mktemp("wfp_up")) as running:
        yield running


def test_submit_runs_the_workflow_as_a_dagster_job(platform, stack_env, pg, s3):
    api = platform["api"]
    response = requests.post(
        f"{api}/api/workflows", json={"workflow": demo_workflow(), "params": {"count": 40}}, timeout=60
    )
    assert response.status_code == 201, response.text
    execution_id = response.json()["executionId"]
    assert response.json()["workflowId"] == "api-demo"
    execution = wait_for(api, execution_id)
    assert execution["status"] == "SUCCESS", execution
    assert [execution["steps"][s]["status"] for s in ("compute", "store", "log")] == ["succeeded"] * 3
    assert execution["steps"]["compute"]["attempts"] == 1 and execution["steps"]["compute"]["durationMs"] > 0
    assert execution["steps"]["compute"]["result"]["recordCount"] == 40
    assert any(e["type"] == "RUN_SUCCESS" for e in execution["events"])
    # effects in the services
    stored = read_json_object(s3, stack_env["WFP_S3_BUCKET"], f"api/{execution_id}.json")
    assert stored["overall"]["count"] == 40
    assert fetch(pg, "SELECT count(*) FROM orchestrator.events WHERE data->>'run' = %s", execution_id) == [
        (1,)
    ]
    # the workflow is now a registered job: listed, fetchable, runnable by name
    assert "api-demo" in [
        w["name"] for w in requests.get(f"{api}/api/workflows", timeout=30).json()["workflows"]
    ]
    assert requests.get(f"{api}/api/workflows/api-demo", timeout=30).json()["job"] == "api_demo"
    rerun = requests.post(f"{api}/api/workflows/api-demo/run", json={"params": {"count": 3}}, timeout=60)
    assert rerun.status_code == 201
    assert wait_for(api, rerun.json()["executionId"])["steps"]["compute"]["result"]["recordCount"] == 3
    listed = requests.get(f"{api}/api/executions", params={"limit": 1}, timeout=30).json()
    assert listed["items"][0]["executionId"] == rerun.json()["executionId"]  # newest first
    page_two = requests.get(
        f"{api}/api/executions", params={"limit": 1, "cursor": listed["nextCursor"]}, timeout=30
    ).json()
    assert page_two["items"][0]["executionId"] == execution_id


def test_idempotency_key_returns_the_same_run(platform):
    api = platform["api"]
    headers = {"Idempotency-Key": "order-42"}
    first = requests.post(
        f"{api}/api/workflows", json=demo_workflow("api-idempotent"), headers=headers, timeout=60
    )
    again = requests.post(
        f"{api}/api/workflows", json=demo_workflow("api-idempotent"), headers=headers, timeout=60
    )
    assert first.status_code == again.status_code == 201
    assert first.json()["executionId"] == again.json()["executionId"]
    assert again.headers["Idempotent-Replayed"] == "true"
    # the same key with another request is refused, not answered with the first run
    other = demo_workflow("api-idempotent")
    other["params"]["count"]["default"] = 99
    reused = requests.post(f"{api}/api/workflows", json=other, headers=headers, timeout=60)
    assert reused.status_code == 422 and reused.json()["error"] == "idempotency_key_reused"
    wait_for(api, first.json()["executionId"])


def test_concurrent_requests_with_one_idempotency_key_make_one_run(platform):
    api = platform["api"]
    headers = {"Idempotency-Key": "racing-7"}

    def post(_: int) -> requests.Response:
        return requests.post(
            f"{api}/api/workflows/minio-store-workflow/run", json={}, headers=headers, timeout=60
        )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
    assert len({a.json()["executionId"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 7
    runs = requests.get(
        f"{api}/api/executions", params={"workflow": "minio-store-workflow", "limit": 50}, timeout=30
    )
    keyed = [e for e in runs.json()["items"] if e["tags"].get("wfp/idempotency-key") == "racing-7"]
    assert len(keyed) == 1
    wait_for(api, keyed[0]["executionId"])


def test_concurrent_submissions_all_become_jobs_and_succeed(platform):
    # Submissions racing each other share code-location reloads; more runs than may run at once wait in the
    # queue instead of failing to start.
    api = platform["api"]
    names = [f"api-concurrent-{i}" for i in range(3)]
    with ThreadPoolExecutor(len(names) + 1) as pool:
        submitted = list(
            pool.map(
                lambda name: requests.post(f"{api}/api/workflows", json=demo_workflow(name), timeout=120),
                [*names, names[0]],  # the same workflow twice: unchanged, it is not rewritten
            )
        )
    assert [r.status_code for r in submitted] == [201] * 4, [r.text for r in submitted]
    assert [r.json()["workflowId"] for r in submitted] == [*names, names[0]]
    executions = [wait_for(api, r.json()["executionId"], timeout=300) for r in submitted]
    assert [e["status"] for e in executions] == ["SUCCESS"] * 4, executions
    listed = {w["name"] for w in requests.get(f"{api}/api/workflows", timeout=30).json()["workflows"]}
    assert set(names) <= listed


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_each_bad_workflow_gets_400_with_details(platform, case):
    change, expected = BAD_INPUTS[case]
    document = copy.deepcopy(digest())
    change(document)
    response = requests.post(f"{platform['api']}/api/workflows", json=document, timeout=30)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_workflow" and body["details"]
    pointer, _, message = expected.partition(": ")
    assert any(
        (d["pointer"] == pointer or pointer.startswith("dependency"))
        and (message or pointer) in f"{d['pointer']}: {d['message']}"
        for d in body["details"]
    ), body


def test_client_mistakes_are_4xx_never_5xx(platform):
    api = platform["api"]
    malformed = requests.post(
        f"{api}/api/workflows", data='{"name": ', headers={"Content-Type": "application/json"}, timeout=30
    )
    assert malformed.status_code == 400 and malformed.json()["error"] == "malformed_json"
    wrong_type = requests.post(
        f"{api}/api/workflows", data="name: x", headers={"Content-Type": "text/yaml"}, timeout=30
    )
    assert wrong_type.status_code == 415
    huge = requests.post(
        f"{api}/api/workflows",
        data=b"[" + b"1," * 700_000 + b"1]",
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert huge.status_code == 413
    missing_table = copy.deepcopy(digest())
    missing_table["steps"][0]["input"]["table"] = "orchestrator.nope"
    response = requests.post(f"{api}/api/workflows", json=missing_table, timeout=30)
    assert response.status_code == 400 and "does not exist" in response.json()["details"][0]["message"]
    unknown = requests.get(f"{api}/api/executions/not-a-run", timeout=30)
    assert unknown.status_code == 404 and unknown.json()["executionId"] == "not-a-run"
    assert requests.get(f"{api}/api/workflows/ghost", timeout=30).status_code == 404
    bad_params = requests.post(
        f"{api}/api/workflows/minio-store-workflow/run", json={"params": {"count": "many"}}, timeout=30
    )
    assert bad_params.status_code == 400 and bad_params.json()["details"][0]["pointer"] == "/params/count"
    shipped_name = requests.post(
        f"{api}/api/workflows", json={**demo_workflow(), "name": "minio-store-workflow"}, timeout=30
    )
    assert shipped_name.status_code == 409
    # minio_store_workflow would be the shipped job minio_store_workflow: refused, and nothing runs
    same_job = requests.post(
        f"{api}/api/workflows", json={**demo_workflow(), "name": "minio_store_workflow"}, timeout=30
    )
    assert same_job.status_code == 409 and "same Dagster job" in same_job.json()["message"]
    assert requests.get(f"{api}/api/workflows/minio_store_workflow", timeout=30).status_code == 404


def test_plugins_health_stats_and_metrics(platform):
    api = platform["api"]
    # a run of its own to count and time (the test runs alone too: `pytest -k metrics`)
    submitted = requests.post(f"{api}/api/workflows", json=demo_workflow("api-metrics"), timeout=60)
    assert submitted.status_code == 201, submitted.text
    assert wait_for(api, submitted.json()["executionId"])["status"] == "SUCCESS"
    plugins = {p["id"]: p for p in requests.get(f"{api}/api/plugins", timeout=30).json()["plugins"]}
    assert {"postgres", "minio", "nats", "pathway", "http"} <= set(plugins)
    select = next(a for a in plugins["postgres"]["actions"] if a["name"] == "select")
    assert "table" in select["inputSchema"]["properties"]
    registered = requests.post(
        f"{api}/api/plugins",
        json={"id": "crm", "name": "CRM", "baseUrl": "http://93.184.215.14/api", "exposes": ["lookup"]},
        timeout=60,
    )
    assert registered.status_code == 201, registered.text
    assert requests.get(f"{api}/api/plugins/crm", timeout=30).json()["actions"][0]["name"] == "lookup"
    loopback = {"id": "grapher", "baseUrl": platform["dagster"], "exposes": ["graphql"]}
    refused = requests.post(f"{api}/api/plugins", json=loopback, timeout=30)
    assert refused.status_code == 400 and refused.json()["details"][0]["pointer"] == "/baseUrl", refused.text
    assert "WFP_HTTP_ALLOW" in refused.json()["details"][0]["message"]
    assert requests.get(f"{api}/api/plugins/grapher", timeout=30).status_code == 404
    assert (
        requests.post(
            f"{api}/api/plugins", json={"id": "postgres", "baseUrl": "http://x", "exposes": ["a"]}, timeout=30
        ).status_code
        == 409
    )
    assert (
        requests.post(
            f"{api}/api/plugins", json={"id": "bad id!", "baseUrl": "ftp://x", "exposes": []}, timeout=30
        ).status_code
        == 400
    )
    health = requests.get(f"{api}/api/health", timeout=30).json()
    assert {s: v["status"] for s, v in health["services"].items()} == dict.fromkeys(
        ["postgres", "nats", "objectStore", "pathway", "dagster"], "ok"
    )
    stats = requests.get(f"{api}/api/stats", timeout=30).json()
    assert stats["workflows"] >= 1 and stats["executions"]["SUCCESS"] >= 1
    metrics = requests.get(f"{api}/metrics", timeout=30).text
    assert 'wfp_api_requests_total{method="GET",route="/api/executions/{execution_id}"' in metrics
    assert 'wfp_runs{status="SUCCESS"}' in metrics
    for step in ("compute", "store", "log"):
        assert f'wfp_step_duration_seconds_count{{job="api_metrics",step="{step}"}}' in metrics


def test_openapi_document_is_served(platform):
    document = requests.get(f"{platform['api']}/api/openapi.json", timeout=30).json()
    assert {"/api/workflows", "/api/executions/{execution_id}", "/api/plugins", "/api/health"} <= set(
        document["paths"]
    )
    assert "WorkflowDocument" in document["components"]["schemas"]
    assert json.dumps(document).count("#/$defs/") == 0


ARTIFACTS = ROOT / "test-artifacts"


def test_dagster_ui_shows_the_submitted_job_and_its_successful_run(platform):
    chromium = require_tool("chromium", "chromium-browser")
    response = requests.post(
        f"{platform['api']}/api/workflows", json=demo_workflow("api-browser"), timeout=60
    )
    execution_id = response.json()["executionId"]
    assert wait_for(platform["api"], execution_id)["status"] == "SUCCESS"
    ARTIFACTS.mkdir(exist_ok=True)
    ui = platform["dagster"]
    wait_for_ui_job(ui, "api_browser")
    job_page = f"{ui}/locations/workflows/jobs/api_browser"
    with dagster_ui_page(chromium, job_page, {"width": 1400, "height": 900}) as page:
        try:
            for op in ("compute", "store", "log"):  # the op graph
                page.get_by_text(op, exact=True).first.wait_for(timeout=30_000)
        except PlaywrightTimeout:
            page.screenshot(path=ARTIFACTS / "dagster-ui-job-failed.png")  # what the page showed instead
            raise
        page.screenshot(path=ARTIFACTS / "dagster-ui-job.png")
        page.goto(f"{ui}/runs/{execution_id}", wait_until="networkidle")
        page.get_by_text("RUN_SUCCESS").first.wait_for(timeout=30_000)
        assert page.get_by_text("Success", exact=True).first.is_visible()
        page.screenshot(path=ARTIFACTS / "dagster-ui-run.png")
    assert (ARTIFACTS / "dagster-ui-run.png").stat().st_size > 10_000


# ---- property-based: schemathesis against the served OpenAPI document finds no 5xx ---------------------------

import hypothesis  # noqa: E402
import schemathesis  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

# Generated workflows may be valid and then really run: keep them to plugins that only touch the local services
# (no HTTP calls to generated URLs, no generated SQL deleting the tables other tests read).
SAFE_PLUGINS = {"pathway", "minio", "nats"}


def _safe(case) -> bool:
    body = case.body if isinstance(case.body, dict) else None
    if case.path != "/api/workflows" or body is None:
        return True
    document = body.get("workflow", body)
    steps = document.get("steps") if isinstance(document, dict) else None
    return not isinstance(steps, list) or all(
        not isinstance(s, dict) or s.get("plugin") in SAFE_PLUGINS or not isinstance(s.get("plugin"), str)
        for s in steps
    )


def test_fuzzing_the_openapi_document_finds_no_server_error(platform):
    # Schemathesis' own pytest integration does not run on pytest 9; drive its Hypothesis strategies directly.
    schema = schemathesis.openapi.from_url(f"{platform['api']}/api/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=15,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            derandomize=True,
            database=None,
        )
        def no_server_error(case) -> None:
            hypothesis.assume(_safe(case))
            case.call_and_validate(checks=[not_a_server_error], timeout=60)

        no_server_error()


def test_an_execution_can_be_awaited_instead_of_polled(platform):
    api = platform["api"]
    submitted = requests.post(f"{api}/api/workflows", json=demo_workflow("api-awaited"), timeout=60)
    execution_id = submitted.json()["executionId"]
    started = time.monotonic()
    finished = requests.get(f"{api}/api/executions/{execution_id}", params={"wait": 60}, timeout=90).json()
    assert finished["status"] == "SUCCESS" and time.monotonic() - started < 60, finished
    assert finished["steps"]["log"]["status"] == "succeeded"
    sleeping = {
        "name": "api-awaited-slow",
        "steps": [
            {"id": "wait", "plugin": "postgres", "action": "query", "input": {"sql": "SELECT pg_sleep(5)"}}
        ],
    }
    slow = requests.post(f"{api}/api/workflows", json=sleeping, timeout=60).json()["executionId"]
    started = time.monotonic()
    pending = requests.get(f"{api}/api/executions/{slow}", params={"wait": 1}, timeout=30).json()
    assert pending["status"] in ("QUEUED", "STARTING", "STARTED") and 0.9 < time.monotonic() - started < 4
    assert requests.get(f"{api}/api/executions/{slow}", params={"wait": 61}, timeout=30).status_code == 400
    assert wait_for(api, slow)["status"] == "SUCCESS"


def test_json_the_platform_cannot_carry_is_a_4xx_and_nothing_is_stored(platform):
    api = platform["api"]
    as_json = {"Content-Type": "application/json"}
    deep = "[" * 3000 + "]" * 3000
    huge = json.dumps(demo_workflow("api-huge")).replace('"default": 25', '"default": ' + "9" * 5000)
    surrogate = json.dumps(demo_workflow("api-surrogate")).replace("submitted over HTTP", "bad \\ud800 text")
    nan = json.dumps(demo_workflow("api-nan")).replace('"default": 25', '"default": NaN')
    for body in (deep, huge, surrogate, nan):
        answer = requests.post(f"{api}/api/workflows", data=body, headers=as_json, timeout=30)
        assert answer.status_code == 400 and answer.json()["error"] in (
            "unsupported_json",
            "malformed_json",
        ), (
            answer.status_code,
            answer.text[:300],
        )
    listed = requests.get(f"{api}/api/workflows", timeout=30)
    assert listed.status_code == 200
    assert not {"api-huge", "api-surrogate", "api-nan"} & {w["name"] for w in listed.json()["workflows"]}
    not_params = requests.post(f"{api}/api/workflows/minio-store-workflow/run", json=[], timeout=30)
    assert not_params.status_code == 400
    plugin = {"id": "sneaky", "name": "sneaky", "baseUrl": "http://127.0.0.1:9", "exposes": ["../graphql"]}
    assert requests.post(f"{api}/api/plugins", json=plugin, timeout=30).status_code == 400


STEP_OUTPUT_LINKS = """
query($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepOutputEvent { stepKey metadataEntries { label ... on UrlMetadataEntry { url } } }
      }
    }
  }
}"""


def test_a_stored_object_is_one_click_away_from_its_run(platform, stack_env):
    """The step that stored an object links to it through the API (no presigned URL: nothing secret in run
    metadata); the link serves the object with its content type, sandboxed (a stored page runs no script)."""
    page = "<!doctype html><title>report</title><h1>Total $1,234.50</h1><script>alert(1)</script>"
    workflow = {
        "name": "api-object-link",
        "steps": [
            {
                "id": "store",
                "plugin": "minio",
                "action": "putObject",
                "input": {"key": "links/{{ run.id }}/report.html", "data": page, "contentType": "text/html"},
            }
        ],
    }
    execution_id = requests.post(f"{platform['api']}/api/workflows", json=workflow, timeout=60).json()[
        "executionId"
    ]
    assert wait_for(platform["api"], execution_id)["status"] == "SUCCESS"
    response = requests.post(
        f"{platform['dagster']}/graphql",
        json={"query": STEP_OUTPUT_LINKS, "variables": {"runId": execution_id}},
        timeout=60,
    )
    events = response.json()["data"]["logsForRun"]["events"]
    [output] = [e for e in events if e["__typename"] == "ExecutionStepOutputEvent"]
    links = {e["label"]: e["url"] for e in output["metadataEntries"] if e.get("url")}
    bucket = stack_env["WFP_S3_BUCKET"]
    assert links == {"link": f"{platform['api']}/api/objects/{bucket}/links/{execution_id}/report.html"}
    assert stack_env["WFP_S3_SECRET_KEY"] not in response.text and "X-Amz-" not in response.text
    served = requests.get(links["link"], timeout=30)
    assert served.status_code == 200 and served.text == page
    assert served.headers["content-type"].startswith("text/html")
    assert served.headers["content-security-policy"] == "sandbox"
    missing = requests.get(f"{platform['api']}/api/objects/{bucket}/links/none.html", timeout=30)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
