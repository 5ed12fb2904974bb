"""The run queue's limits on a running platform (`wfp up`): dagster.yaml's `concurrency.runs` caps the runs in
progress at once, and a `wfp/workflow` tag limit runs a workflow one run at a time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
import requests
import yaml

from workflow_platform.orchestration.catalog import check_file
from workflow_platform.orchestration.job import build_job
from workflow_platform.orchestration.workflow_run import WORKFLOW_TAG
from workflow_platform_tests.conftest import running_platform

ROOT = Path(__file__).parent.parent
MAX_RUNS = 3  # the project's 8 would need more than the 2 cores here to show a queue
IN_PROGRESS = ("STARTING", "STARTED")


def sleeper(name: str, seconds: float) -> dict:
    return {
        "name": name,
        "steps": [
            {
                "id": "sleep",
                "plugin": "postgres",
                "action": "query",
                "input": {"sql": f"SELECT pg_sleep({seconds})"},
            }
        ],
    }


def limited_instance_yaml() -> str:
    """The project's dagster.yaml with a smaller run limit and one more tag limit, in the same form as its
    `wfp/workflow: fraud-model-training` limit."""
    settings = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    runs = settings["concurrency"]["runs"]
    runs["max_concurrent_runs"] = MAX_RUNS
    runs["tag_concurrency_limits"].append({"key": WORKFLOW_TAG, "value": "concurrency-serial", "limit": 1})
    return yaml.safe_dump(settings, sort_keys=False)


def test_the_project_limits_fraud_model_training_to_one_run_by_its_workflow_tag():
    runs = yaml.safe_load((ROOT / "dagster.yaml").read_text())["concurrency"]["runs"]
    assert runs["max_concurrent_runs"] == 8
    assert {"key": WORKFLOW_TAG, "value": "fraud-model-training", "limit": 1} in runs[
        "tag_concurrency_limits"
    ]
    spec, problems = check_file(ROOT / "workflows" / "fraud-model-training" / "workflow.json")
    assert problems == []
    assert build_job(spec).tags[WORKFLOW_TAG] == "fraud-model-training"  # every run of it carries the tag


@pytest.fixture(scope="module")
def platform(stack_env, tmp_path_factory) -> Iterator[dict]:
    dagster_home = tmp_path_factory.mktemp("dagster_limited")
    (dagster_home / "dagster.yaml").write_text(limited_instance_yaml())
    with running_platform(tmp_path_factory.mktemp("wfp_up"), env={"DAGSTER_HOME": str(dagster_home)}) as up:
        yield up


def launch(api: str, workflow: dict, runs: int) -> list[str]:
    first = requests.post(f"{api}/api/workflows", json=workflow, timeout=60)
    assert first.status_code == 201, first.text

    def again(_: int) -> str:
        response = requests.post(f"{api}/api/workflows/{workflow['name']}/run", timeout=60)
        assert response.status_code == 201, response.text
        return response.json()["executionId"]

    with ThreadPoolExecutor(4) as pool:  # all queued within moments, more than the limit can start
        return [first.json()["executionId"], *pool.map(again, range(runs - 1))]


def run_and_watch(api: str, workflow: dict, runs: int) -> tuple[list[int], list[dict]]:
    """Launch `runs` runs of `workflow` and sample, every 0.2 s until they have all ended, how many are in
    progress. Returns the samples and the ended executions."""
    samples: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            listed = requests.get(
                f"{api}/api/executions", params={"workflow": workflow["name"], "limit": 200}, timeout=30
            ).json()["items"]
            samples.append(sum(e["status"] in IN_PROGRESS for e in listed))
            stop.wait(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        ids = launch(api, workflow, runs)
        ended = [
            requests.get(f"{api}/api/executions/{i}", params={"wait": 60}, timeout=90).json() for i in ids
        ]
    finally:
        stop.set()
        watcher.join(30)
    return samples, ended


def most_at_once(executions: list[dict]) -> int:
    """The most runs that were STARTED at the same time, from their start and end times."""
    moments = []
    for e in executions:
        moments += [(datetime.fromisoformat(e["startedAt"]), 1), (datetime.fromisoformat(e["endedAt"]), -1)]
    at_once = most = 0
    for _, change in sorted(moments, key=lambda m: (m[0], m[1])):  # an end before a start at the same instant
        at_once += change
        most = max(most, at_once)
    return most


def test_no_more_runs_than_the_limit_are_in_progress_at_once(platform):
    samples, ended = run_and_watch(platform["api"], sleeper("concurrency-sleep", 2), runs=12)
    assert [e["status"] for e in ended] == ["SUCCESS"] * 12
    assert max(samples) <= MAX_RUNS, samples
    assert most_at_once(ended) == MAX_RUNS  # the limit was reached, never passed


def test_a_tag_limited_workflow_never_runs_twice_at_once(platform):
    samples, ended = run_and_watch(platform["api"], sleeper("concurrency-serial", 1), runs=4)
    assert [e["status"] for e in ended] == ["SUCCESS"] * 4
    assert max(samples) <= 1, samples
    assert most_at_once(ended) == 1
