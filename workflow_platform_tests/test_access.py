"""Who may do what (README "Security and trust"): the API's and the Dagster UI's credentials, on a real `wfp up`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator

import pytest
import requests
import websockets

from workflow_platform_tests.conftest import demo_workflow, require_tool, running_platform, wfp

OPERATOR = "operator-" + "3f9c" * 8
VIEWER = "viewer-" + "77ab" * 8


@pytest.fixture(scope="module")
def guarded(stack_env, tmp_path_factory) -> Iterator[dict]:
    env = {"WFP_API_TOKEN": OPERATOR, "WFP_API_READ_TOKEN": VIEWER}
    with running_platform(tmp_path_factory.mktemp("wfp_guarded"), env=env) as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def executions_count(api: str) -> int:
    answer = requests.get(f"{api}/api/executions?limit=200", headers=bearer(OPERATOR), timeout=30)
    return len(answer.json()["items"])


def test_every_api_route_needs_credentials_and_the_viewer_only_reads(guarded):
    api = guarded["api"]
    submitted = requests.post(
        f"{api}/api/workflows", json=demo_workflow("api-guarded"), headers=bearer(OPERATOR), timeout=60
    )
    assert submitted.status_code == 201, submitted.text
    execution_id = submitted.json()["executionId"]
    reads = [
        "/api/workflows",
        "/api/workflows/api-guarded",
        "/api/executions",
        f"/api/executions/{execution_id}",
    ]
    reads += ["/api/plugins", "/api/plugins/minio", "/api/stats", "/metrics"]
    plugin = {"id": "crm", "baseUrl": "http://93.184.215.14/api", "exposes": ["lookup"]}
    writes = [
        ("/api/workflows", demo_workflow("api-guarded-2")),
        ("/api/workflows/api-guarded/run", {"params": {"count": 3}}),
        ("/api/plugins", plugin),
    ]
    before = executions_count(api)
    for headers in ({}, bearer("wrong"), {"Authorization": "Basic d3JvbmctYmFzaWM="}):
        for path in reads:
            answer = requests.get(f"{api}{path}", headers=headers, timeout=30)
            assert answer.status_code == 401, (path, headers, answer.text)
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
            assert answer.json()["error"] == "unauthorized"
        for path, body in writes:
            assert requests.post(f"{api}{path}", json=body, headers=headers, timeout=30).status_code == 401, (
                path
            )
    for path in reads:
        assert requests.get(f"{api}{path}", headers=bearer(VIEWER), timeout=30).status_code == 200, path
    for path, body in writes:
        answer = requests.post(f"{api}{path}", json=body, headers=bearer(VIEWER), timeout=30)
        assert answer.status_code == 403 and answer.json()["error"] == "forbidden", (path, answer.text)
    assert executions_count(api) == before  # refused requests started nothing
    assert requests.get(f"{api}/api/plugins/crm", headers=bearer(VIEWER), timeout=30).status_code == 404
    for path, body in writes:
        answer = requests.post(f"{api}{path}", json=body, headers=bearer(OPERATOR), timeout=60)
        assert answer.status_code == 201, (path, answer.text)
    assert requests.get(f"{api}/api/health", timeout=30).status_code == 200  # liveness stays public
    assert wait_for_with(api, execution_id)["status"] == "SUCCESS"


def wait_for_with(api: str, execution_id: str) -> dict:
    with requests.Session() as session:
        session.headers.update(bearer(VIEWER))
        return session.get(f"{api}/api/executions/{execution_id}?wait=60", timeout=90).json()


def test_a_stored_objects_link_asks_a_browser_for_the_viewer_token(guarded, stack_env):
    """The link a run gives to a stored object is opened in a browser: it is refused without credentials with a
    Basic challenge (which a browser prompts for), and the viewer token as the password reads it."""
    api = guarded["api"]
    submitted = requests.post(
        f"{api}/api/workflows", json=demo_workflow("api-guarded-object"), headers=bearer(OPERATOR), timeout=60
    )
    execution_id = submitted.json()["executionId"]
    assert wait_for_with(api, execution_id)["status"] == "SUCCESS"
    link = f"{api}/api/objects/{stack_env['WFP_S3_BUCKET']}/api/{execution_id}.json"
    for headers in ({}, {"Authorization": "Basic d3JvbmctYmFzaWM="}):
        refused = requests.get(link, headers=headers, timeout=30)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    read = requests.get(link, auth=("anyone", VIEWER), timeout=30)
    assert read.status_code == 200 and read.headers["content-type"].startswith("application/json")
    assert json.loads(read.text)  # the stored result of the demo's compute step


LAUNCH_QUERY = {"query": "{ repositoriesOrError { __typename } }"}


def test_the_dagster_ui_needs_the_operator_token(guarded):
    ui = guarded["dagster"]
    page = requests.get(ui, timeout=30)
    assert page.status_code == 401 and page.headers["WWW-Authenticate"].startswith("Basic")
    assert requests.post(f"{ui}/graphql", json=LAUNCH_QUERY, timeout=30).status_code == 401
    assert (
        requests.post(f"{ui}/graphql", json=LAUNCH_QUERY, auth=("x", VIEWER), timeout=30).status_code == 401
    )
    with requests.Session() as browser:
        signed_in = browser.get(ui, auth=("anyone", OPERATOR), timeout=30)
        assert signed_in.status_code == 200 and "wfp_session" in browser.cookies
        answer = browser.post(f"{ui}/graphql", json=LAUNCH_QUERY, timeout=30)  # the cookie alone
        assert answer.status_code == 200 and "repositoriesOrError" in answer.text
        # A page elsewhere cannot use the browser's credentials to change anything
        forged = browser.post(
            f"{ui}/graphql", json=LAUNCH_QUERY, headers={"Origin": "http://evil.test"}, timeout=30
        )
        assert forged.status_code == 403
        cookie = browser.cookies["wfp_session"]
    assert requests.post(f"{ui}/graphql", json=LAUNCH_QUERY, headers=bearer(OPERATOR), timeout=30).ok
    socket_url = ui.replace("http://", "ws://") + "/graphql"

    async def open_socket(headers: dict[str, str]) -> str | None:
        async with websockets.connect(
            socket_url, subprotocols=["graphql-ws"], additional_headers=headers
        ) as ws:
            return ws.subprotocol

    with pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(open_socket({}))
    assert refused.value.response.status_code == 403
    assert asyncio.run(open_socket({"Cookie": f"wfp_session={cookie}"})) == "graphql-ws"


def test_wfp_submit_sends_the_token(guarded, tmp_path):
    document = tmp_path / "workflow.json"
    document.write_text(json.dumps(demo_workflow("api-submitted")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFP_API")} | {
        "WFP_API_URL": guarded["api"]
    }
    without = wfp("submit", str(document), env=env)
    assert without.returncode != 0 and "Authorization: Bearer" in without.stderr, without.stderr
    done = wfp("submit", str(document), "--wait", env=env | {"WFP_API_TOKEN": OPERATOR})
    assert done.returncode == 0, done.stderr
    execution_id = json.loads(done.stdout.splitlines()[0])["executionId"]
    status = wfp("status", execution_id, env=env | {"WFP_API_READ_TOKEN": VIEWER})
    assert status.returncode == 0 and "SUCCESS" in status.stdout, status.stdout + status.stderr


@pytest.mark.parametrize(
    "command", [["up", "--host", "0.0.0.0"], ["webserver", "-h", "0.0.0.0", "-w", "workspace.yaml"]]
)
def test_nothing_listens_beyond_loopback_without_credentials(command, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFP_API")} | {"WFP_HOME": str(tmp_path)}
    refused = wfp(*command, env=env, timeout=60)
    assert refused.returncode == 1
    assert "refusing to listen on 0.0.0.0 without credentials: set WFP_API_TOKEN" in refused.stderr
    assert not (tmp_path / "stack").exists()  # refused before starting anything


def test_a_browser_with_the_token_uses_the_dagster_ui(guarded):
    chromium = require_tool("chromium", "chromium-browser")
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    response = requests.post(
        f"{guarded['api']}/api/workflows",
        json=demo_workflow("api-ui-guarded"),
        headers=bearer(OPERATOR),
        timeout=60,
    )
    execution_id = response.json()["executionId"]
    assert wait_for_with(guarded["api"], execution_id)["status"] == "SUCCESS"
    flags = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=flags)
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):  # headless: no prompt
            browser.new_page().goto(guarded["dagster"])
        context = browser.new_context(http_credentials={"username": "ops", "password": OPERATOR})
        page = context.new_page()
        page.goto(f"{guarded['dagster']}/runs/{execution_id}", wait_until="networkidle")
        with contextlib.suppress(PlaywrightTimeout):  # Dagster's first-visit newsletter dialog
            page.get_by_role("button", name="Skip").click(timeout=15_000)
        page.get_by_text("RUN_SUCCESS").first.wait_for(timeout=30_000)
        browser.close()
