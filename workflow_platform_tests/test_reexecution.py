"""Re-executing a run the way the Dagster UI's "Re-execute all" does (GraphQL launchPipelineReexecution against
`wfp up`) repeats none of its side effects: the shipped sales report, re-executed, leaves one event row, one
message on its stream and one result object, because their keys derive from the run's root, not the run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date

import nats
import pytest
import requests

from workflow_platform.demo_data.sales import SalesSeed, load
from workflow_platform.language.actions import StepContext
from workflow_platform.plugins.fraud import model_version
from workflow_platform.plugins.nats import PublishEachInput, _message_id
from workflow_platform.plugins.result_store import result_key
from workflow_platform.resources.jetstream import DUPLICATE_WINDOW_S
from workflow_platform_tests.conftest import fetch, graphql, running_platform, stream_messages, wait_for

WORKFLOW = "sales-report-workflow"
# The seed test_sales_report.py loads too: loading it again replaces the tables with the same rows.
SEED = SalesSeed(days=2, orders_per_day=400, seed=11, end=date(2025, 10, 31))
DAY = "2025-10-30"
REEXECUTE = """
mutation($params: ReexecutionParams!) {
  launchPipelineReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""


@pytest.fixture(scope="module")
def platform(stack_env, tmp_path_factory) -> Iterator[dict]:
    load(stack_env["WFP_PG_ADMIN_DSN"], SEED)
    with running_platform(tmp_path_factory.mktemp("reexec_up")) as running:
        yield running


def reexecute_all(dagster_url: str, parent_run_id: str) -> str:
    """What the UI's "Re-execute all" sends: a new run of every step, with the parent as its parent and root."""
    variables = {"params": {"parentRunId": parent_run_id, "strategy": "ALL_STEPS"}}
    launched = graphql(dagster_url, REEXECUTE, variables)["launchPipelineReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def duplicate_window_s(nats_url: str, stream: str) -> float:
    async def read() -> float:
        client = await nats.connect(nats_url)
        try:
            return (await client.jetstream().stream_info(stream)).config.duplicate_window
        finally:
            await client.drain()

    return asyncio.run(read())


def test_reexecute_all_repeats_no_side_effect(platform, stack_env, pg, s3):
    api = platform["api"]
    launched = requests.post(
        f"{api}/api/workflows/{WORKFLOW}/run", json={"params": {"report_date": DAY}}, timeout=30
    )
    assert launched.status_code == 201, launched.text
    first = launched.json()["executionId"]
    assert wait_for(api, first, timeout=180)["status"] == "SUCCESS"

    again = reexecute_all(platform["dagster"], first)
    execution = wait_for(api, again, timeout=180)
    assert execution["status"] == "SUCCESS", execution
    assert execution["tags"]["dagster/root_run_id"] == first
    # Every step ran again, its side effects included: they found what the first run wrote.
    assert {s["status"] for s in execution["steps"].values()} == {"succeeded"}
    assert execution["steps"]["notify"]["result"]["duplicate"] is True
    assert execution["steps"]["log-completion"]["result"]["rowCount"] == 0

    runs = [first, again]
    rows = fetch(
        pg,
        "SELECT data->>'runId', idempotency_key FROM orchestrator.events "
        "WHERE event_type = 'report_generated' AND data->>'runId' = ANY(%s)",
        runs,
    )
    assert rows == [(first, f"{first}/log-completion")]

    messages = stream_messages(stack_env["WFP_NATS_URL"], "REPORTS", "reports.sales.daily")
    assert [body["runId"] for _, _, body in messages if body["runId"] in runs] == [first]
    # JetStream drops a repeated Nats-Msg-Id only within the stream's duplicate window: the platform's streams
    # keep ids a day, not the 2-minute default.
    assert duplicate_window_s(stack_env["WFP_NATS_URL"], "REPORTS") == DUPLICATE_WINDOW_S

    bucket = stack_env["WFP_S3_BUCKET"]
    results = [
        item.object_name
        for run in runs
        for item in s3.list_objects(bucket, prefix=f"results/{WORKFLOW}/{run}/", recursive=True)
    ]
    assert results == [f"results/{WORKFLOW}/{first}/query-sales.parquet"]


def test_every_derived_key_is_the_roots():
    """A re-execution (another run id, the same root) derives the keys its root derived; another root does not."""

    def context(run_id: str, root: str) -> StepContext:
        return StepContext(
            run_id=run_id,
            step_id="train",
            workflow="wf",
            execution_key=root,
            execution_started=lambda: "2025-10-31T06:00:00+00:00",
        )

    def keys(ctx: StepContext) -> tuple[str, ...]:
        each = PublishEachInput(subject="models.fraud", messages=[{"a": 1}])
        return (_message_id(each, ctx, 0, {"a": 1}), result_key(ctx, "parquet"), model_version("hgb", ctx))

    first, reexecution, other = context("r1", "r1"), context("r2", "r1"), context("r3", "r3")
    assert keys(reexecution) == keys(first)
    assert all(a != b for a, b in zip(keys(other), keys(first), strict=True))
    assert model_version("hgb", first).startswith("20251031T060000Z-hgb-")
