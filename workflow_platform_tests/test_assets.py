"""Stable assets declared from workflow.json: the code location's asset graph, the runs' events against it (on
the real services), and the Lineage page in headless Chromium."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
import requests

from workflow_platform.demo_data.sales import SalesSeed, load
from workflow_platform.orchestration.assets import FRAUD_MODEL, asset_events, workflow_lineage
from workflow_platform.orchestration.catalog import check_document, check_file
from workflow_platform.orchestration.fraud_stream_asset import FRAUD_STREAM
from workflow_platform.orchestration.job import build_job
from workflow_platform.plugins import Touched
from workflow_platform_tests.conftest import dagster_ui_page, require_tool
from workflow_platform_tests.test_cli import digest

ROOT = Path(__file__).parent.parent
ARTIFACTS = ROOT / "test-artifacts"
SALES = ROOT / "workflows" / "sales-report-workflow" / "workflow.json"
DAYS = ["2025-10-29", "2025-10-30", "2025-10-31"]


def key(path: str) -> dg.AssetKey:
    return dg.AssetKey.from_user_string(path)


@pytest.fixture(scope="module")
def asset_graph():
    from workflow_platform.definitions import defs  # the code location, as `dagster` loads it

    dg.Definitions.validate_loadable(defs)
    return defs.resolve_asset_graph()


def parents(graph, path: str) -> set[str]:
    return {k.to_user_string() for k in graph.get(key(path)).parent_keys}


def test_code_location_declares_each_workflows_datasets_and_their_lineage(asset_graph):
    graph = asset_graph
    assert graph.toposorted_asset_keys  # a graph, no cycle
    # sales report: the tables it reads -> its steps -> the report objects (one asset each, partitioned by
    # day like the workflow) -> the message announcing them
    assert parents(graph, "sales-report-workflow/query-sales") == {
        "postgres/sales/orders",
        "postgres/sales/order_items",
        "postgres/sales/products",
    }
    assert parents(graph, "sales-report-workflow/aggregate") == {"sales-report-workflow/query-sales"}
    assert parents(graph, "s3/reports/daily-sales.html") == {"sales-report-workflow/render-html"}
    assert parents(graph, "s3/reports/daily-sales.json") == {"sales-report-workflow/aggregate"}
    assert "s3/reports/daily-sales.json" in parents(graph, "nats/reports/sales/daily")
    html = graph.get(key("s3/reports/daily-sales.html"))
    assert isinstance(html.partitions_def, dg.DailyPartitionsDefinition)
    assert html.partitions_def.start.date() == date(2024, 1, 1)
    assert html.group_name == "sales_report_workflow" and html.owners == ["team:sales-analytics"]
    assert graph.get(key("nats/reports/sales/daily")).partitions_def is None
    # training -> detection: the model the one trains is what the other scores with
    assert parents(graph, "fraud-model-training/transactions") == {"postgres/orchestrator/transactions"}
    assert parents(graph, FRAUD_MODEL.to_user_string()) == {"fraud-model-training/features"}
    assert parents(graph, "fraud-detection-workflow/score") == {
        "fraud-detection-workflow/batch",
        "fraud-detection-workflow/history",
        "fraud-detection-workflow/profiles",
        "s3/models/fraud",
    }
    assert "fraud-detection-workflow/score" in {k.to_user_string() for k in graph.get(FRAUD_MODEL).child_keys}
    assert parents(graph, "s3/fraud-alerts/transactions.json") == {"fraud-detection-workflow/score"}
    assert parents(graph, "nats/fraud/alerts") == {"fraud-detection-workflow/score"}
    # the detection writes scores into the table its batch came from: recorded, not drawn (it would be a cycle)
    transactions = graph.get(key("postgres/orchestrator/transactions"))
    assert transactions.parent_keys == set()
    assert "fraud-detection-workflow/write-scores" in transactions.metadata["written_by"]
    assert "fraud-detection-workflow/score" in transactions.metadata["not_drawn"]
    # the minio-store workflow; events written by three workflows, in the postgres group
    assert parents(graph, "s3/outputs/minio-store-workflow/result.json") == {
        "minio-store-workflow/run-pathway"
    }
    events = graph.get(key("postgres/orchestrator/events"))
    assert events.group_name == "postgres" and len(events.metadata["written_by"].split(", ")) == 4
    # one asset per dataset or step, never per run or object: 24 for the four shipped workflows; and the
    # real-time fraud stream, which reads the model
    assert len(graph.get_all_asset_keys() - {FRAUD_STREAM}) == 24
    assert graph.get(FRAUD_STREAM).parent_keys == {FRAUD_MODEL}


def test_templated_keys_and_query_tables_are_read_from_the_steps():
    spec, problems = check_document(digest())
    assert problems == []
    lineage = workflow_lineage(spec)
    archive = lineage["archive-digest"]
    [written] = archive.writes
    # digests/{{ 'now' | date('YYYY-MM-DD/HH') }}/digest-{{ ... }}.json: one asset, whatever the date
    assert written.key == key("s3/digests/digest.json")
    assert written.pattern.fullmatch("digests/2025-10-31/13/digest-20251031130000.json")
    assert not written.pattern.fullmatch("reports/digest.json")
    query = {
        "name": "q",
        "steps": [
            {
                "id": "q",
                "plugin": "postgres",
                "action": "query",
                "input": {
                    "sql": "WITH b AS (SELECT * FROM orchestrator.transactions) "
                    "INSERT INTO orchestrator.events (event_type, data) "
                    "SELECT 'x', to_jsonb(EXTRACT(epoch FROM c.created_at)) FROM b JOIN orchestrator.customer_profiles c "
                    "ON c.customer_id = b.customer_id WHERE c.note <> 'FROM sales.orders' AND b.id IS DISTINCT FROM c.id "
                    "-- JOIN sales.products"
                },
            }
        ],
    }
    spec, problems = check_document(query)
    assert problems == []
    step = workflow_lineage(spec)["q"]
    assert {d.key for d in step.reads} == {
        key("postgres/orchestrator/transactions"),
        key("postgres/orchestrator/customer_profiles"),
    }
    assert {d.key for d in step.writes} == {key("postgres/orchestrator/events")}


def test_touches_become_events_of_the_stable_assets():
    spec, _ = check_file(SALES)
    lineage = workflow_lineage(spec)
    html = Touched(
        ("s3", "wfp", "reports", "daily-sales-2025-10-31.html"),
        "object written",
        {"bucket": "wfp", "key": "reports/daily-sales-2025-10-31.html", "etag": "abc", "size": 1234},
    )
    [event] = asset_events(lineage["store-html"], [html], "2025-10-31")
    assert isinstance(event, dg.AssetMaterialization)
    assert event.asset_key == key("s3/reports/daily-sales.html") and event.partition == "2025-10-31"
    assert event.metadata["object"].value == "s3://wfp/reports/daily-sales-2025-10-31.html"
    assert event.metadata["etag"].value == "abc" and event.metadata["size"].value == 1234
    # a result stored by reference: an observation of the step's asset, its object and rows as metadata
    result = Touched(
        ("s3", "wfp", "results", "sales-report-workflow", "run-1", "query-sales.parquet"),
        "result stored by reference",
        {"rows": 10},
    )
    [event] = asset_events(lineage["query-sales"], [result], "2025-10-31")
    assert isinstance(event, dg.AssetObservation)
    assert event.asset_key == key("sales-report-workflow/query-sales") and event.partition == "2025-10-31"
    assert event.metadata["rows"].value == 10
    # a step whose result stays in memory is not observed (its STEP_OUTPUT is); a table and a subject are not
    # partitioned
    assert asset_events(lineage["render-html"], [], "2025-10-31") == []
    notify = Touched(("nats", "reports", "sales", "daily"), "message published", {"seq": 3})
    [event] = asset_events(lineage["notify"], [notify], "2025-10-31")
    assert event.asset_key == key("nats/reports/sales/daily") and event.partition is None
    # the model and latest.json of one training run: one materialization of the model, with its version
    training, _ = check_file(ROOT / "workflows" / "fraud-model-training" / "workflow.json")
    train = workflow_lineage(training)["train"]
    stored = [
        Touched(
            ("s3", "wfp", "models", "fraud", "v7", "model.joblib"), "fraud model stored", {"version": "v7"}
        ),
        Touched(("s3", "wfp", "models", "fraud", "latest.json"), "latest fraud model", {"version": "v7"}),
    ]
    [event] = asset_events(train, stored, None)
    assert isinstance(event, dg.AssetMaterialization) and event.asset_key == FRAUD_MODEL
    assert event.metadata["version"].value == "v7"
    assert event.metadata["objects"].value == [
        "s3://wfp/models/fraud/v7/model.joblib",
        "s3://wfp/models/fraud/latest.json",
    ]


@pytest.fixture(scope="module")
def three_days(stack_env) -> dict[str, int]:
    return load(
        stack_env["WFP_PG_ADMIN_DSN"], SalesSeed(days=3, orders_per_day=120, seed=3, end=date(2025, 10, 31))
    )


def test_three_daily_runs_keep_the_catalog_and_materialise_three_partitions(
    three_days, asset_graph, tmp_path
):
    spec, problems = check_file(SALES)
    assert problems == []
    job = build_job(spec, SALES)
    declared = asset_graph.get_all_asset_keys()
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        catalog = []
        for day in DAYS:
            assert job.execute_in_process(instance=instance, partition_key=day).success
            catalog.append(set(instance.get_asset_keys()))
        assert catalog[0] == catalog[1] == catalog[2]  # three runs, not a key more than one
        assert catalog[0] <= declared and len(catalog[0]) == 6  # render-html keeps its result in memory
        for report in ("s3/reports/daily-sales.html", "s3/reports/daily-sales.json"):
            assert instance.get_materialized_partitions(key(report)) == set(DAYS)
        # each run's concrete object, etag and size stay on its materialization
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=key("s3/reports/daily-sales.html"), asset_partitions=["2025-10-30"]
            ),
            limit=1,
        ).records[0]
        metadata = record.asset_materialization.metadata
        assert metadata["object"].value.endswith("/reports/daily-sales-2025-10-30.html")
        assert metadata["etag"].value and metadata["size"].value > 1000
        observed = instance.fetch_observations(key("sales-report-workflow/query-sales"), limit=3).records
        assert sorted(r.event_log_entry.asset_observation.partition for r in observed) == DAYS
        assert all(r.event_log_entry.asset_observation.metadata["rows"].value > 0 for r in observed)


def test_lineage_page_shows_the_asset_graph(stack_env, tmp_path):
    chromium = require_tool("chromium", "chromium-browser")
    from workflow_platform.stack.processes import free_ports

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (port,) = free_ports()
    webserver = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml"]
        + ["-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ui = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{ui}/server_info", timeout=5).ok:
                    break
            assert webserver.poll() is None, "dagster-webserver exited"
            time.sleep(0.5)
        ARTIFACTS.mkdir(exist_ok=True)
        with dagster_ui_page(chromium, f"{ui}/asset-groups", {"width": 1600, "height": 1000}) as page:
            for group in (
                "sales_report_workflow",
                "fraud_model_training",
                "fraud_detection_workflow",
                "postgres",
            ):
                page.get_by_text(group).first.wait_for(timeout=60_000)
            page.get_by_text("fetching statuses").first.wait_for(state="hidden", timeout=60_000)
            assert page.get_by_text("Empty graph").count() == 0
            page.screenshot(path=ARTIFACTS / "dagster-ui-lineage.png")
            # one group expanded: the report objects between the step that renders them and the message
            page.goto(
                f"{ui}/locations/workflows/asset-groups/sales_report_workflow/lineage",
                wait_until="networkidle",
            )
            for node in ("daily-sales.html", "daily-sales.json", "render-html", "query-sales"):
                page.get_by_text(node).first.wait_for(timeout=60_000)
            page.screenshot(path=ARTIFACTS / "dagster-ui-lineage-sales.png")
            # the fraud model's own lineage: trained from the features of one workflow, scored with by the other
            page.goto(f"{ui}/assets/s3/models/fraud?view=lineage&lineageDepth=1", wait_until="networkidle")
            for node in ("features", "score", "trained"):
                page.get_by_text(node, exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=ARTIFACTS / "dagster-ui-lineage-model.png")
    finally:
        webserver.terminate()
        webserver.wait(timeout=60)
    assert (ARTIFACTS / "dagster-ui-lineage.png").stat().st_size > 10_000
