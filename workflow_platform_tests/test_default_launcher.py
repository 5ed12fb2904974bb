"""Dagster's default run launcher stays selectable (`wfp up --launcher default`, the baseline of
bench/api_submit.py). A module of its own: two platforms on one PostgreSQL share one instance, and each one's run
queue would take the other's runs."""

from __future__ import annotations

import requests

from workflow_platform.instance.launcher.run_launcher import WORKER_TAG
from workflow_platform_tests.conftest import demo_workflow, running_platform, wait_for


def test_dagsters_default_launcher_stays_selectable(stack_env, tmp_path):
    """`wfp up --launcher default`: Dagster's DefaultRunLauncher and stock daemon; runs start in the code server's
    run subprocess, without a warm worker."""
    with running_platform(tmp_path, launcher="default") as running:
        api = running["api"]
        submitted = requests.post(f"{api}/api/workflows", json=demo_workflow("default-launcher"), timeout=120)
        assert submitted.status_code == 201, submitted.text
        execution = wait_for(api, submitted.json()["executionId"], timeout=180)
        assert execution["status"] == "SUCCESS", execution
        assert WORKER_TAG not in execution["tags"]
        assert any(e["message"].startswith("Started process for run") for e in execution["events"])
