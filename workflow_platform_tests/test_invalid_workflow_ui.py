"""An invalid workflow is visible in the Dagster UI with its problems after a reload, and the others still load."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import requests

from workflow_platform.stack.processes import free_ports
from workflow_platform_tests.conftest import dagster_ui_page, graphql, require_tool, ui_jobs

ROOT = Path(__file__).parent.parent
ARTIFACTS = ROOT / "test-artifacts"
LOCATION = "workflow_platform.definitions"
BROKEN = '{"name": "broken-digest", "description": "typo", "steps": [{"id": "a", "plugin": "minio", "action": "putObjekt", "input": {}}]}'

RELOAD = """
mutation($name: String!) {
  reloadRepositoryLocation(repositoryLocationName: $name) {
    __typename
    ... on WorkspaceLocationEntry { locationOrLoadError { __typename } }
  }
}"""


@contextlib.contextmanager
def webserver(workflows: Path, home: Path):
    (port,) = free_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFP_")}
    env |= {"WORKFLOWS_DIR": str(workflows), "DAGSTER_HOME": str(home)}
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    log = (home / "webserver.log").open("w")
    process = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "dagster-webserver"),
            "-m",
            LOCATION,
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    ui = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (home / "webserver.log").read_text()
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{ui}/server_info", timeout=5).ok:
                    break
            assert time.monotonic() < deadline, "dagster-webserver did not answer within 120 s"
            time.sleep(0.5)
        yield ui
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        log.close()


def test_an_invalid_workflow_shows_in_the_ui_with_its_problems(tmp_path):
    chromium = require_tool("chromium", "chromium-browser")
    workflows = tmp_path / "workflows"
    shutil.copytree(ROOT / "workflows" / "minio-store-workflow", workflows / "minio-store-workflow")
    with webserver(workflows, tmp_path / "dagster_home") as ui:
        assert set(ui_jobs(ui)) == {"minio_store_workflow"}
        # A user breaks a workflow and the location reloads (what the UI's "Reload" button does).
        (workflows / "broken-digest").mkdir()
        (workflows / "broken-digest" / "workflow.json").write_text(BROKEN)
        reloaded = graphql(ui, RELOAD, {"name": LOCATION})["reloadRepositoryLocation"]
        assert reloaded["locationOrLoadError"]["__typename"] == "RepositoryLocation", reloaded
        loaded = ui_jobs(ui)
        assert set(loaded) == {"minio_store_workflow", "broken_digest"}  # the valid one still loads
        assert {"key": "wfp/invalid", "value": "true"} in loaded["broken_digest"]["tags"]

        ARTIFACTS.mkdir(exist_ok=True)
        job_page = f"{ui}/locations/{LOCATION}/jobs/broken_digest"
        with dagster_ui_page(chromium, job_page, {"width": 1400, "height": 900}) as page:
            problem = "plugin 'minio' has no action 'putObjekt'"
            page.get_by_text(problem).first.wait_for(timeout=30_000)
            body = page.inner_text("body")
            assert "Invalid workflow: not loaded." in body
            assert str(workflows / "broken-digest" / "workflow.json") in body  # the file
            assert "/steps/0/action" in body  # the JSON pointer
            assert "hint: minio actions:" in body
            page.screenshot(path=ARTIFACTS / "dagster-ui-invalid-workflow.png")
    assert (ARTIFACTS / "dagster-ui-invalid-workflow.png").stat().st_size > 10_000
