"""Warm runs through `wfp up`, whoever starts them: the API, the Dagster UI (GraphQL), a schedule tick, a sensor
tick and a backfill all execute on workers forked by the daemon's zygote; a worker killed mid-run fails its run in
seconds; a run canceled from the UI stops; a workflow submitted while the pool is warm runs its own new code."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psutil
import psycopg2
import pytest
import requests
from dagster_graphql import DagsterGraphQLClient

from workflow_platform.instance.launcher.run_launcher import WORKER_TAG
from workflow_platform_tests.conftest import (
    demo_workflow,
    fetch,
    grant_to_workflows,
    graphql,
    running_platform,
    wait_for,
    wfp,
)

SENSOR_TABLE = "public.warm_sensor_rows"
TODAY = datetime.now(UTC).date()


def sleeping_workflow(name: str, seconds: int = 60) -> dict:
    return {
        "name": name,
        "steps": [
            {
                "id": "wait",
                "plugin": "postgres",
                "action": "query",
                "timeout": 120000,
                "input": {"sql": "SELECT pg_sleep(:s) AS slept", "params": {"s": seconds}},
            }
        ],
    }


def started_by_daemon() -> dict[str, dict]:
    """Workflows in place before `wfp up` starts, so the daemon's schedules, sensors and backfills know them."""
    every_minute = {**demo_workflow("warm-scheduled"), "schedule": {"cron": "* * * * *"}}
    on_rows = {
        "name": "warm-sensed",
        "trigger": {"table": SENSOR_TABLE, "intervalSeconds": 1, "batchSize": 100},
        "steps": [
            {
                "id": "count",
                "plugin": "postgres",
                "action": "query",
                "input": {
                    "sql": f"SELECT count(*) AS n FROM {SENSOR_TABLE} WHERE id > :after AND id <= :through",
                    "params": {"after": "{{ trigger.after }}", "through": "{{ trigger.through }}"},
                },
            }
        ],
    }
    daily = demo_workflow("warm-daily")
    daily["params"]["day"] = {"type": "string", "default": str(TODAY)}
    daily["partitions"] = {"param": "day", "start": str(TODAY - timedelta(days=5))}
    return {w["name"]: w for w in (every_minute, on_rows, daily)}


@pytest.fixture(scope="module")
def warm(stack_env, tmp_path_factory) -> Iterator[dict]:
    with psycopg2.connect(stack_env["WFP_PG_ADMIN_DSN"]) as connection:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {SENSOR_TABLE} (id bigserial PRIMARY KEY, v int)")
        grant_to_workflows(connection, SENSOR_TABLE, "SELECT")
    connection.close()
    home = tmp_path_factory.mktemp("warm_up")
    for name, workflow in started_by_daemon().items():
        (home / "submitted" / name).mkdir(parents=True)
        (home / "submitted" / name / "workflow.json").write_text(json.dumps(workflow))
    with running_platform(home) as running:
        client = DagsterGraphQLClient("127.0.0.1", port_number=running["dagster_port"], timeout=60)
        yield {**running, "graphql": client}


def executions(api: str, workflow: str) -> list[dict]:
    return requests.get(f"{api}/api/executions", params={"workflow": workflow}, timeout=30).json()["items"]


def first_execution(api: str, workflow: str, where=lambda e: True, timeout: float = 150) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in executions(api, workflow) if where(e)]
        if found:
            return wait_for(api, found[-1]["executionId"], timeout=max(1, deadline - time.monotonic()))
        time.sleep(1)
    raise AssertionError(f"no run of {workflow} within {timeout:g} s")


def assert_ran_warm(execution: dict) -> None:
    """Succeeded in the worker the warm pool forked for it: the launcher's tag names the worker the zygote
    started, and that is the process that executed the run (Dagster's own "Started process" event)."""
    assert execution["status"] == "SUCCESS", execution
    worker = json.loads(execution["tags"][WORKER_TAG])
    assert worker["zygote"] != worker["pid"]
    started = [
        e["message"] for e in execution["events"] if e["message"].startswith("Started process for run")
    ]
    assert started == [f"Started process for run (pid: {worker['pid']})."], started


BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""


def test_every_way_of_starting_a_run_executes_on_a_warm_worker(warm, pg):
    api = warm["api"]
    # API
    submitted = requests.post(f"{api}/api/workflows", json=demo_workflow("warm-api"), timeout=60)
    assert submitted.status_code == 201, submitted.text
    assert_ran_warm(wait_for(api, submitted.json()["executionId"]))
    # the Dagster UI's launchpad (GraphQL launchRun)
    run_id = warm["graphql"].submit_job_execution("warm_daily", repository_location_name="workflows", tags={})
    assert_ran_warm(wait_for(api, run_id))
    # a sensor tick: new rows in the table the workflow watches
    fetch(pg, f"INSERT INTO {SENSOR_TABLE} (v) SELECT generate_series(1, 5)")
    sensed = first_execution(api, "warm-sensed", lambda e: "dagster/sensor_name" in e["tags"])
    assert_ran_warm(sensed)
    assert sensed["steps"]["count"]["result"]["rows"][0]["n"] == 5
    # a backfill of two days, launched as from the UI's partitions page
    days = [str(TODAY - timedelta(days=2)), str(TODAY - timedelta(days=1))]
    selector = {
        "repositorySelector": {"repositoryLocationName": "workflows", "repositoryName": "__repository__"}
    }
    params = {
        "selector": {**selector, "partitionSetName": "warm_daily_partition_set"},
        "partitionNames": days,
    }
    launched = graphql(warm["dagster"], BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    for day in days:
        backfilled = first_execution(
            api,
            "warm-daily",
            lambda e, day=day: e["tags"].get("dagster/partition") == day and "dagster/backfill" in e["tags"],
        )
        assert_ran_warm(backfilled)
    # a schedule tick (every minute)
    scheduled = first_execution(api, "warm-scheduled", lambda e: "dagster/schedule_name" in e["tags"])
    assert_ran_warm(scheduled)


def test_a_worker_killed_mid_run_fails_its_run_within_seconds(warm):
    api = warm["api"]
    submitted = requests.post(f"{api}/api/workflows", json=sleeping_workflow("warm-killed", 30), timeout=60)
    execution_id = submitted.json()["executionId"]
    deadline = time.monotonic() + 60
    while True:
        execution = requests.get(f"{api}/api/executions/{execution_id}", timeout=30).json()
        if execution["status"] == "STARTED" and WORKER_TAG in execution["tags"]:
            break
        assert time.monotonic() < deadline, execution
        time.sleep(0.2)
    worker = json.loads(execution["tags"][WORKER_TAG])
    os.kill(worker["pid"], signal.SIGKILL)
    killed = time.monotonic()
    failed = wait_for(api, execution_id, timeout=30)
    assert failed["status"] == "FAILURE" and time.monotonic() - killed < 30
    assert any("SIGKILL" in e["message"] for e in failed["events"]), failed["events"][-5:]
    # the pool goes on with fresh workers
    after = requests.post(f"{api}/api/workflows", json=demo_workflow("warm-after-kill"), timeout=60)
    assert_ran_warm(wait_for(api, after.json()["executionId"]))


def test_a_run_canceled_from_the_ui_stops(warm, pg):
    api = warm["api"]
    submitted = requests.post(f"{api}/api/workflows", json=sleeping_workflow("warm-canceled", 61), timeout=60)
    execution_id = submitted.json()["executionId"]
    deadline = time.monotonic() + 60
    while requests.get(f"{api}/api/executions/{execution_id}", timeout=30).json()["status"] != "STARTED":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    warm["graphql"].terminate_run(execution_id)
    canceled = wait_for(api, execution_id, timeout=30)
    assert canceled["status"] == "CANCELED", canceled
    worker = json.loads(canceled["tags"][WORKER_TAG])
    deadline = time.monotonic() + 15
    while psutil.pid_exists(worker["pid"]) and psutil.Process(worker["pid"]).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the canceled run's worker still runs"
        time.sleep(0.2)
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(61)%%' AND state = 'active'"
    )
    deadline = time.monotonic() + 15
    while fetch(pg, sleeping)[0][0]:  # the worker cancelled its query before it went
        assert time.monotonic() < deadline, "the canceled run's query still runs"
        time.sleep(0.2)


def test_a_workflow_changed_while_the_pool_is_warm_runs_its_new_code(warm, stack_env, s3):
    api = warm["api"]

    def version(text: str) -> dict:
        workflow = demo_workflow("warm-changing")
        workflow["steps"][1]["input"] = {"key": "warm/{{ run.id }}.txt", "data": text}
        return workflow

    for text in ("first version", "second version", "third version"):
        submitted = requests.post(f"{api}/api/workflows", json=version(text), timeout=60)
        assert submitted.status_code == 201, submitted.text
        execution_id = submitted.json()["executionId"]
        assert_ran_warm(wait_for(api, execution_id))
        stored = s3.get_object(stack_env["WFP_S3_BUCKET"], f"warm/{execution_id}.txt")
        assert stored.read().decode() == text


def wfp_cli(warm: dict, *args: str) -> subprocess.CompletedProcess[str]:
    """`wfp <args>` on the running platform's WFP_HOME (so on its Dagster instance)."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    return wfp(*args, env={**env, "WFP_HOME": str(warm["home"])})


def test_a_run_started_with_wfp_run_is_recorded_where_wfp_up_shows_it(warm, tmp_path):
    """One instance: `wfp run` on the same WFP_HOME records into the running platform's instance."""
    workflow = demo_workflow("warm-from-the-cli")
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(workflow))
    completed = wfp_cli(warm, "run", str(path), "--json")
    assert completed.returncode == 0, completed.stderr
    for step in ("compute", "store", "log"):  # progress reaches the terminal, not the run's captured output
        assert f"✔ {step}" in completed.stderr, completed.stderr
    run_id = json.loads(completed.stdout)["run_id"]
    listed = executions(warm["api"], "warm-from-the-cli")
    assert [e["executionId"] for e in listed] == [run_id]
    assert wait_for(warm["api"], run_id)["status"] == "SUCCESS"


PARTITION_STATUSES = """
query($repository: RepositorySelector!, $name: String!) {
  partitionSetOrError(repositorySelector: $repository, partitionSetName: $name) {
    __typename
    ... on PartitionSet {
      partitionStatusesOrError {
        __typename
        ... on PartitionStatuses { results { partitionName runStatus } }
      }
    }
  }
}"""


def test_a_wfp_backfill_is_recorded_where_wfp_up_shows_it(warm):
    """One instance: `wfp backfill` of a workflow `wfp up` runs records its runs where the platform's API and
    Dagster UI show them, and the UI's partitions page counts the days as done (not missing, to run again)."""
    days = [str(TODAY - timedelta(days=5)), str(TODAY - timedelta(days=4))]
    path = warm["home"] / "submitted" / "warm-daily" / "workflow.json"
    completed = wfp_cli(warm, "backfill", str(path), "--from", days[0], "--to", days[1])
    assert completed.returncode == 0, completed.stderr
    assert "backfill of 2 days: 2 succeeded" in completed.stderr
    run_ids = dict(re.findall(r"(\d{4}-\d\d-\d\d): SUCCESS \(run ([0-9a-f-]+)\)", completed.stderr))
    assert sorted(run_ids) == days, completed.stderr
    # the platform's API lists them
    listed = {e["executionId"]: e for e in executions(warm["api"], "warm-daily")}
    for day, run_id in run_ids.items():
        assert run_id in listed, f"the backfill's run for {day} is not listed by wfp up's API"
        assert listed[run_id]["tags"].get("dagster/partition") == day
    # the Dagster UI of wfp up (its GraphQL): the runs, and the days as succeeded partitions of the job
    query = "query($ids: [String]) { runsOrError(filter: {runIds: $ids}) { ... on Runs { results { runId status } } } }"
    runs = graphql(warm["dagster"], query, {"ids": list(run_ids.values())})["runsOrError"]["results"]
    assert sorted(r["runId"] for r in runs) == sorted(run_ids.values())
    assert {r["status"] for r in runs} == {"SUCCESS"}
    repository = {"repositoryLocationName": "workflows", "repositoryName": "__repository__"}
    variables = {"repository": repository, "name": "warm_daily_partition_set"}
    found = graphql(warm["dagster"], PARTITION_STATUSES, variables)["partitionSetOrError"]
    statuses = {r["partitionName"]: r["runStatus"] for r in found["partitionStatusesOrError"]["results"]}
    assert {day: statuses.get(day) for day in days} == dict.fromkeys(days, "SUCCESS"), statuses


# Fails when it runs, not when it is checked (a constant 1/0 fails the submission's query plan).
DIVIDE_BY_NO_ROWS = "SELECT 1 / (SELECT count(*) FROM orchestrator.events WHERE false) AS x"


def test_a_new_workflow_whose_run_fails_at_once_is_retried(warm):
    """dagster.yaml's run_retries apply to a workflow that appeared a moment ago too: the daemon finds its job
    (it reloads the code location when the workflow files changed) instead of giving up on the retry. The file
    is put in place by hand, so no reload through the UI comes first."""
    api = warm["api"]
    for attempt in range(2):
        name = f"warm-fails-at-once-{attempt}"
        failing = {
            "name": name,
            "steps": [
                {"id": "divide", "plugin": "postgres", "action": "query", "input": {"sql": DIVIDE_BY_NO_ROWS}}
            ],
        }
        folder = warm["home"] / "submitted" / name
        folder.mkdir(parents=True)
        (folder / "workflow.json").write_text(json.dumps(failing))
        launched = requests.post(f"{api}/api/workflows/{name}/run", json={}, timeout=60)
        assert launched.status_code == 201, launched.text
        first = launched.json()["executionId"]
        assert wait_for(api, first)["status"] == "FAILURE"
        retry = first_execution(
            api, name, lambda e, first=first: e["tags"].get("dagster/parent_run_id") == first, timeout=60
        )
        assert retry["tags"]["dagster/root_run_id"] == first
        events = requests.get(f"{api}/api/executions/{first}", timeout=30).json()["events"]
        assert not [e for e in events if "unable to retry" in (e["message"] or "")], events
