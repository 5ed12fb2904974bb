"""End-to-end time of the daily sales report (the shipped workflow, through Dagster, on the embedded stack) for
10k, 100k and 1M orders in the day, next to the same figures computed by one SQL query (the reference floor).

Both start cold, as a daily report meets its day's rows: before each, PostgreSQL is restarted (empty shared
buffers) and the OS page cache dropped where the bench may (root). The floor is also timed warm, right after.

    .venv/bin/python bench/sales_report.py [--orders 10000 100000 1000000]

Prints one JSON object. Starts the embedded stack unless the WFP_* variables are set.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import psycopg2

from workflow_platform.demo_data.sales import SalesSeed, load
from workflow_platform.orchestration.catalog import check_file
from workflow_platform.orchestration.job import build_job
from workflow_platform.orchestration.workflow_run import params_run_config
from workflow_platform.settings import admin_dsn, wfp_home
from workflow_platform.stack import EmbeddedStack, pg_server

WORKFLOW = Path(__file__).parent.parent / "workflows" / "sales-report-workflow" / "workflow.json"
DAY = date(2025, 10, 31)
# The report's figures in one statement: totals, per region, per product, per hour.
SQL_FLOOR = """
WITH lines AS (
  SELECT o.region, p.name AS product, date_trunc('hour', o.created_at) AS hour, i.quantity * i.unit_price AS amount, i.quantity
  FROM sales.orders o JOIN sales.order_items i ON i.order_id = o.order_id JOIN sales.products p ON p.product_id = i.product_id
  WHERE o.created_at >= %(day)s::timestamptz AND o.created_at < %(day)s::timestamptz + interval '1 day')
SELECT region, product, hour, sum(amount), count(*), sum(quantity) FROM lines
GROUP BY GROUPING SETS ((), (region), (product), (hour))
"""


@contextlib.contextmanager
def services() -> Iterator[tuple[dict[str, str], EmbeddedStack | None]]:
    if os.environ.get("WFP_PG_DSN"):
        yield dict(os.environ), None
        return
    with tempfile.TemporaryDirectory(dir=wfp_home()) as state, EmbeddedStack(Path(state)) as stack:
        yield stack.env, stack


def go_cold(stack: EmbeddedStack | None) -> str:
    """Restart PostgreSQL on its port and drop the OS page cache if allowed; say what was done."""
    if stack is None:
        return "warm: the WFP_* services are not the bench's to restart"
    pg_server.stop(stack.handles["postgres"])
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        page_cache = "dropped"
    except OSError:
        page_cache = "kept (no permission to drop it)"
    stack.start()  # starts the stopped server again, on its port
    return f"PostgreSQL restarted, OS page cache {page_cache}"


def time_floor(dsn: str) -> float:
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(SQL_FLOOR, {"day": DAY.isoformat()})
        cursor.fetchall()
        return time.perf_counter() - started


def service_rss_mb(pathway_url: str) -> float | None:
    import psutil

    port = int(pathway_url.rsplit(":", 1)[1])
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "workflow_platform.pathway_service" in cmdline and str(port) in cmdline:
            return round(process.memory_info().rss / 1e6, 1)
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    spec, problems = check_file(WORKFLOW)
    assert not problems
    job = build_job(spec, WORKFLOW)
    results = []
    with services() as (env, stack):
        os.environ.update(env)
        with dg.DagsterInstance.ephemeral() as instance:
            for orders in args.orders:
                seeded = load(admin_dsn(env), SalesSeed(days=1, orders_per_day=orders, seed=3, end=DAY))
                cache = go_cold(stack)
                started = time.perf_counter()
                result = job.execute_in_process(
                    instance=instance,
                    partition_key=DAY.isoformat(),
                    run_config={
                        **params_run_config({"report_date": DAY.isoformat()}),
                        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
                    },
                    raise_on_error=False,
                )
                elapsed = time.perf_counter() - started
                steps = {
                    e.step_key: round(e.event_specific_data.duration_ms / 1000, 3)
                    for e in result.all_events
                    if e.event_type_value == "STEP_SUCCESS"
                }
                go_cold(stack)
                sql_cold_s = time_floor(env["WFP_PG_DSN"])
                sql_warm_s = time_floor(env["WFP_PG_DSN"])
                reference = result.output_for_node("query_sales") if result.success else {}
                results.append(
                    {
                        "orders": orders,
                        "order_lines": seeded["order_items"],
                        "success": result.success,
                        "end_to_end_s": round(elapsed, 2),
                        "lines_per_s": round(seeded["order_items"] / elapsed),
                        "passed_by_reference": "ref" in reference,
                        "step_s": steps,
                        "sql_one_query_cold_s": round(sql_cold_s, 3),
                        "sql_one_query_warm_s": round(sql_warm_s, 3),
                        "cache": cache,
                        "pathway_service_rss_mb": service_rss_mb(env["WFP_PATHWAY_URL"]),
                    }
                )
    print(
        json.dumps(
            {"workflow": spec.name, "day": DAY.isoformat(), "runs": results, "load_average": os.getloadavg()}
        )
    )


if __name__ == "__main__":
    main()
