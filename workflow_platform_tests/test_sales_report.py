"""The shipped sales report on seeded data: its numbers against SQL on the seeded tables, the JSON and HTML
objects, the event row, the NATS message, the schedule and the backfill."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest

from workflow_platform.cli.runner import environment
from workflow_platform.demo_data.sales import SalesSeed, generate, load
from workflow_platform.orchestration.catalog import check_file
from workflow_platform.orchestration.job import build_job
from workflow_platform.orchestration.object_links import API_URL_VARIABLE
from workflow_platform.orchestration.triggers import build_schedule
from workflow_platform_tests.conftest import fetch, read_json_object, require_tool, stream_messages, wfp

ROOT = Path(__file__).parent.parent
WORKFLOW = ROOT / "workflows" / "sales-report-workflow" / "workflow.json"
SEED = SalesSeed(days=2, orders_per_day=400, seed=11, end=date(2025, 10, 31))
DAY = "2025-10-31"
API_URL = "http://127.0.0.1:3999"


@pytest.fixture(scope="module")
def seeded(stack_env) -> dict[str, int]:
    return load(stack_env["WFP_PG_ADMIN_DSN"], SEED)


@pytest.fixture(scope="module")
def report_run(seeded) -> dg.ExecuteInProcessResult:
    spec, problems = check_file(WORKFLOW)
    assert problems == []
    with environment({API_URL_VARIABLE: API_URL}):  # what `wfp up` gives its runs
        result = build_job(spec, WORKFLOW).execute_in_process(
            instance=dg.DagsterInstance.get(), partition_key=DAY, raise_on_error=False
        )
    assert result.success
    return result


def test_seed_is_deterministic_and_idempotent(stack_env, seeded, pg):
    assert generate(SEED)["order_items"].equals(generate(SEED)["order_items"])
    first = fetch(pg, "SELECT count(*), sum(quantity * unit_price) FROM sales.order_items")
    assert load(stack_env["WFP_PG_ADMIN_DSN"], SEED) == seeded  # re-seeding replaces, never duplicates
    assert fetch(pg, "SELECT count(*), sum(quantity * unit_price) FROM sales.order_items") == first
    assert seeded["orders"] == 800 and fetch(
        pg, "SELECT min(created_at)::date, max(created_at)::date FROM sales.orders"
    ) == [(date(2025, 10, 30), date(2025, 10, 31))]


def test_report_numbers_match_sql_on_the_seeded_tables(report_run, pg):
    report = report_run.output_for_node("aggregate")
    metrics = report["metrics"]
    day_lines = (
        "FROM sales.orders o JOIN sales.order_items i ON i.order_id = o.order_id JOIN sales.products p ON p.product_id = i.product_id "
        "WHERE o.created_at >= '2025-10-31T00:00:00Z' AND o.created_at < '2025-11-01T00:00:00Z'"
    )
    [(revenue, lines, units)] = fetch(
        pg, f"SELECT sum(i.quantity * i.unit_price)::float, count(*), sum(i.quantity)::int {day_lines}"
    )
    assert metrics["totalRevenue"]["revenue"] == pytest.approx(revenue, abs=0.01)
    assert metrics["totalRevenue"]["orderLines"] == lines and metrics["totalRevenue"]["units"] == units
    regions = dict(
        fetch(pg, f"SELECT o.region, sum(i.quantity * i.unit_price)::float {day_lines} GROUP BY 1")
    )
    assert {r["region"]: r["revenue"] for r in metrics["regionalBreakdown"]["regions"]} == pytest.approx(
        regions, abs=0.01
    )
    top = fetch(
        pg,
        f"SELECT p.name, sum(i.quantity * i.unit_price)::float AS revenue {day_lines} GROUP BY 1 ORDER BY 2 DESC LIMIT 3",
    )
    assert [(p["product"], p["revenue"]) for p in metrics["topProducts"]["products"][:3]] == [
        (name, pytest.approx(value, abs=0.01)) for name, value in top
    ]
    hours = dict(
        fetch(
            pg,
            f"SELECT extract(hour FROM o.created_at AT TIME ZONE 'UTC')::int, sum(i.quantity * i.unit_price)::float {day_lines} GROUP BY 1",
        )
    )
    trend = {int(h["hour"][11:13]): h["revenue"] for h in metrics["hourlyTrend"]["hours"]}
    assert trend == pytest.approx(hours, abs=0.01)


def test_report_objects_event_and_message(report_run, stack_env, s3, pg):
    bucket = stack_env["WFP_S3_BUCKET"]
    stored = read_json_object(s3, bucket, f"reports/daily-sales-{DAY}.json")
    assert stored == report_run.output_for_node("aggregate")
    html = s3.get_object(bucket, f"reports/daily-sales-{DAY}.html").read().decode()
    assert 'id="chart-regions"' in html and 'id="chart-products"' in html and 'id="chart-hours"' in html
    run_id = report_run.run_id
    [(data,)] = fetch(
        pg,
        "SELECT data FROM orchestrator.events WHERE event_type = 'report_generated' AND data->>'runId' = %s",
        run_id,
    )
    assert data["date"] == DAY and data["html"] == f"s3://{bucket}/reports/daily-sales-{DAY}.html"
    published = report_run.output_for_node("notify")
    message = next(
        m
        for m in stream_messages(stack_env["WFP_NATS_URL"], published["stream"], "reports.sales.daily")
        if m[0] == published["seq"]
    )
    assert message[2]["reportKey"] == f"reports/daily-sales-{DAY}.json" and message[2]["runId"] == run_id


def step_output_metadata(run: dg.ExecuteInProcessResult, step: str) -> dict:
    [output] = [e for e in run.all_events if e.event_type_value == "STEP_OUTPUT" and e.step_key == step]
    return output.event_specific_data.metadata


def test_the_report_preview_comes_first_and_is_complete(report_run):
    """What the UI shows on the render step: the markdown preview first, with every region and product of the
    report, then the result with its HTML cut to a line (not a wall of escaped HTML)."""
    metadata = step_output_metadata(report_run, "render_html")
    assert list(metadata)[0] == "preview"
    preview = metadata["preview"].value
    metrics = report_run.output_for_node("aggregate")["metrics"]
    regions = metrics["regionalBreakdown"]["regions"]
    assert len(regions) == 6
    for region in regions:
        assert f"| {region['region']} | ${region['revenue']:,.2f} |" in preview
    for product in metrics["topProducts"]["products"]:
        assert f"| {product['product']} | ${product['revenue']:,.2f} |" in preview
    assert "Busiest hour" in preview
    html = report_run.output_for_node("render_html")["html"]
    outline = metadata["result_outline"].value
    assert outline["html"].startswith(html[:80]) and outline["html"].endswith(f"({len(html):,} characters)")
    assert outline["size"] == len(html.encode()) and "result_preview" not in metadata


def test_each_stored_object_has_a_link_through_the_api(report_run, stack_env):
    bucket = stack_env["WFP_S3_BUCKET"]
    for step, key in (
        ("store_json", f"reports/daily-sales-{DAY}.json"),
        ("store_html", f"reports/daily-sales-{DAY}.html"),
    ):
        link = step_output_metadata(report_run, step)["link"]
        assert isinstance(link, dg.UrlMetadataValue)
        assert link.url == f"{API_URL}/api/objects/{bucket}/{key}"
        [materialized] = [
            e
            for e in report_run.all_events
            if e.event_type_value == "ASSET_MATERIALIZATION" and e.step_key == step
        ]
        assert materialized.event_specific_data.materialization.metadata["link"].url == link.url
    # Nothing secret in any metadata of the run (a presigned URL would carry the access key and a signature).
    secret = stack_env["WFP_S3_SECRET_KEY"]
    for event in report_run.all_events:
        text = repr(event.event_specific_data)
        assert secret not in text and "X-Amz-" not in text


def test_schedule_reports_on_the_previous_day():
    spec, _ = check_file(WORKFLOW)
    job = build_job(spec, WORKFLOW)
    schedule = build_schedule(spec, job)
    assert (
        schedule.cron_schedule == "0 6 * * *" and schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    )
    tick = datetime(2025, 11, 1, 6, 0, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        repository = dg.Definitions(jobs=[job], schedules=[schedule]).get_repository_def()
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=tick, repository_def=repository
        )
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2025-10-31" and request.run_key == "2025-10-31"
    assert request.run_config["resources"]["workflow_params"]["config"]["report_date"] == "2025-10-31"


def test_definitions_include_the_daily_schedule_and_partitions(tmp_path):
    code = (
        "from workflow_platform.definitions import defs; r = defs.get_repository_def(); "
        "s = r.get_schedule_def('sales_report_workflow_schedule'); j = r.get_job('sales_report_workflow'); "
        "print(s.cron_schedule, j.partitions_def.get_partition_keys()[0])"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert completed.stdout.split() == ["0", "6", "*", "*", "*", "2024-01-01"]


def test_wfp_run_downloads_the_report_and_the_page_shows_its_charts(seeded, tmp_path):
    completed = wfp("run", "sales-report-workflow", "-p", f"report_date={DAY}", "--outputs", str(tmp_path))
    assert completed.returncode == 0, completed.stderr
    page = tmp_path / "reports" / f"daily-sales-{DAY}.html"
    assert (
        json.loads((tmp_path / "reports" / f"daily-sales-{DAY}.json").read_text())["metrics"]["totalRevenue"][
            "revenue"
        ]
        > 0
    )
    chromium = require_tool("chromium", "chromium-browser")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        view = browser.new_page(viewport={"width": 800, "height": 1400})
        view.goto(page.as_uri())
        regions = view.locator("#chart-regions rect").count()
        assert regions == len(
            json.loads((tmp_path / "reports" / f"daily-sales-{DAY}.json").read_text())["metrics"][
                "regionalBreakdown"
            ]["regions"]
        )
        assert view.locator("#chart-products rect").count() == 10
        assert view.locator("#chart-hours circle").count() >= 20
        (ROOT / "test-artifacts").mkdir(exist_ok=True)
        view.screenshot(path=ROOT / "test-artifacts" / "sales-report.png", full_page=True)
        browser.close()


def test_backfill_regenerates_a_date_range(seeded, stack_env, s3):
    completed = wfp(
        "backfill", "sales-report-workflow", "--from", "2025-10-30", "--to", "2025-10-31", timeout=600
    )
    assert completed.returncode == 0, completed.stderr
    assert "backfill of 2 days: 2 succeeded" in completed.stderr
    for day in ("2025-10-30", "2025-10-31"):
        assert (
            read_json_object(s3, stack_env["WFP_S3_BUCKET"], f"reports/daily-sales-{day}.json")["rowCount"]
            > 0
        )
    runs = dg.DagsterInstance.get().get_run_records(dg.RunsFilter(tags={"dagster/partition": "2025-10-30"}))
    assert runs and runs[0].dagster_run.job_name == "sales_report_workflow"
