"""sales-aggregation-pipeline at 10k, 100k and 1M rows: latency and rows/s of the Pathway service (inline where the
body fits under its 1 MiB limit, by reference to an object in the store in each format), next to pandas doing
the same aggregation in-process and PostgreSQL doing it with GROUP BY; and the service's peak memory (RSS).

    .venv/bin/python bench/pathway_pipelines.py [--sizes 10000 100000 1000000] [--repeat 3]
                                                [--formats parquet csv jsonl]

Prints one JSON object. Starts an embedded stack (postgres, s3, pathway) unless WFP_PG_DSN, WFP_S3_ENDPOINT and
WFP_PATHWAY_URL are all set. The target: a million rows by reference in under 5 s end to end (request sent to
answer received, the object already in the store), the service's RSS under 1.5 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import psutil
import psycopg2
import requests
from minio import Minio

PIPELINE = "sales-aggregation-pipeline"
METRICS = ["totalRevenue", "topProducts", "regionalBreakdown", "hourlyTrend", "dailyTrend"]
BODY_LIMIT = 1024 * 1024  # aiohttp's default client_max_size, which the service keeps
TARGET = {"rows": 1_000_000, "seconds": 5.0, "rss_mb": 1536}
SERVICES = ("postgres", "s3", "pathway")
BUCKET = "bench"


def sales(rows: int, seed: int = 42) -> pd.DataFrame:
    """Order lines over 30 days: 100 products in 4 categories, 5 regions; amount = quantity x unit_price."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "order_id": np.arange(rows),
            "product": np.array([f"p{i:03d}" for i in range(100)], dtype=object)[rng.integers(0, 100, rows)],
            "category": np.array(["books", "toys", "garden", "tools"], dtype=object)[
                rng.integers(0, 4, rows)
            ],
            "region": np.array(["EU", "US", "APAC", "LATAM", "MEA"], dtype=object)[rng.integers(0, 5, rows)],
            "quantity": rng.integers(1, 10, rows),
            "unit_price": np.round(rng.random(rows) * 100, 2),
            "created_at": pd.Timestamp("2025-10-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 30 * 86400, rows), unit="s"),
        }
    )


def inline_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as a workflow would send them inline, compactly: the fields used (`price` is `unit_price`'s
    shorter alias), times as epoch seconds."""
    epoch_seconds = (frame["created_at"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    compact = frame.drop(columns=["order_id"]).rename(columns={"unit_price": "price"})
    return compact.assign(created_at=epoch_seconds).to_dict(orient="records")


def encoded(frame: pd.DataFrame, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "parquet":
        frame.to_parquet(buffer, index=False)
    elif fmt == "csv":
        frame.to_csv(buffer, index=False)
    else:
        frame.to_json(buffer, orient="records", lines=True, date_format="iso")
    return buffer.getvalue()


class PeakRss:
    """Samples a process's resident memory every 5 ms while in use."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._running = False
        self._thread: threading.Thread | None = None

    def now_mb(self) -> float:
        return round(self.process.memory_info().rss / 2**20, 1)

    def __enter__(self) -> PeakRss:
        self.peak = self.process.memory_info().rss
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._running = False
        assert self._thread is not None
        self._thread.join()

    def _sample(self) -> None:
        while self._running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 2**20, 1)


def timed(call: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    seconds, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - started)
    return seconds, result


def figures(rows: int, seconds: list[float]) -> dict[str, Any]:
    median = statistics.median(seconds)
    return {
        "latency_s": {
            "min": round(min(seconds), 3),
            "median": round(median, 3),
            "max": round(max(seconds), 3),
        },
        "rows_per_s": round(rows / median),
    }


def run_pipeline(url: str, body: bytes) -> dict[str, Any]:
    response = requests.post(
        f"{url}/pipelines/{PIPELINE}/run",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=600,
    )
    response.raise_for_status()
    return response.json()


def pathway_runs(
    env: dict[str, str], store: Minio, memory: PeakRss, frame: pd.DataFrame, formats: list[str], repeat: int
) -> dict[str, Any]:
    url = env["WFP_PATHWAY_URL"]
    rows = len(frame)
    found: dict[str, Any] = {}
    inline = json.dumps(
        {"salesData": inline_rows(frame), "includeMetrics": METRICS}, separators=(",", ":")
    ).encode()
    if len(inline) <= BODY_LIMIT:
        with memory:
            seconds, report = timed(lambda: run_pipeline(url, inline), repeat)
        found["inline"] = {
            "body_mb": round(len(inline) / 2**20, 2),
            **figures(rows, seconds),
            "peak_rss_mb": memory.peak_mb,
        }
    else:
        found["inline"] = {
            "skipped": f"a {len(inline) / 2**20:.1f} MiB body exceeds the service's 1 MiB limit"
        }
    for fmt in formats:
        data = encoded(frame, fmt)
        key = f"pathway-bench/sales-{rows}.{fmt}"
        started = time.perf_counter()
        store.put_object(BUCKET, key, io.BytesIO(data), len(data))
        upload = time.perf_counter() - started
        body = json.dumps(
            {"salesData": {"ref": f"s3://{BUCKET}/{key}", "format": fmt}, "includeMetrics": METRICS}
        ).encode()
        with memory:
            seconds, report = timed(lambda body=body: run_pipeline(url, body), repeat)
        found[fmt] = {
            "object_mb": round(len(data) / 2**20, 1),
            "upload_s": round(upload, 3),
            **figures(rows, seconds),
            "peak_rss_mb": memory.peak_mb,
        }
        store.remove_object(BUCKET, key)
    total = report["metrics"]["totalRevenue"]
    top = [product["product"] for product in report["metrics"]["topProducts"]["products"]]
    found["report"] = {"revenue": total["revenue"], "orders": total["orderLines"], "top": top}
    return found


def pandas_report(frame: pd.DataFrame) -> dict[str, Any]:
    """The pipeline's five metrics, computed by pandas."""
    amount = frame["quantity"] * frame["unit_price"]
    sales = frame.assign(amount=amount)
    revenue = sales["amount"].sum()
    products = sales.groupby("product").agg(
        revenue=("amount", "sum"),
        orders=("amount", "size"),
        units=("quantity", "sum"),
        category=("category", "max"),
    )
    products["share"] = products["revenue"] / revenue
    products = products.assign(cents=products["revenue"].round(2)).reset_index()
    top = products.sort_values(["cents", "product"], ascending=[False, True]).head(10)
    regions = sales.groupby("region").agg(revenue=("amount", "sum"), orders=("amount", "size"))
    hours = sales.groupby(sales["created_at"].dt.floor("h")).agg(
        revenue=("amount", "sum"), orders=("amount", "size")
    )
    days = sales.groupby(sales["created_at"].dt.floor("D")).agg(
        revenue=("amount", "sum"), orders=("amount", "size")
    )
    return {
        "revenue": round(float(revenue), 2),
        "orders": len(sales),
        "top": top["product"].tolist(),
        "regions": len(regions),
        "hours": len(hours),
        "days": len(days),
    }


def pandas_runs(store: Minio, frame: pd.DataFrame, repeat: int) -> dict[str, Any]:
    """pandas in this process: the same parquet object read from the store, then the same aggregation."""
    key = f"pathway-bench/pandas-{len(frame)}.parquet"
    data = encoded(frame, "parquet")
    store.put_object(BUCKET, key, io.BytesIO(data), len(data))

    def read_and_aggregate() -> dict[str, Any]:
        response = store.get_object(BUCKET, key)
        try:
            table = pd.read_parquet(io.BytesIO(response.read()))
        finally:
            response.close()
            response.release_conn()
        return pandas_report(table)

    seconds, report = timed(read_and_aggregate, repeat)
    aggregate_only, _ = timed(lambda: pandas_report(frame), repeat)
    store.remove_object(BUCKET, key)
    return {
        "from_store": figures(len(frame), seconds),
        "aggregation_only": figures(len(frame), aggregate_only),
        "report": report,
    }


POSTGRES_QUERIES = {
    "totalRevenue": "SELECT count(*), sum(quantity * unit_price), sum(quantity) FROM bench_sales",
    "topProducts": (
        "SELECT product, max(category), sum(quantity * unit_price) AS revenue, count(*), sum(quantity) "
        "FROM bench_sales GROUP BY product ORDER BY round(sum(quantity * unit_price), 2) DESC, product LIMIT 10"
    ),
    "regionalBreakdown": (
        "SELECT region, sum(quantity * unit_price), count(*), sum(quantity) FROM bench_sales GROUP BY region"
    ),
    "hourlyTrend": (
        "SELECT date_trunc('hour', created_at), sum(quantity * unit_price), count(*), sum(quantity) "
        "FROM bench_sales GROUP BY 1 ORDER BY 1"
    ),
    "dailyTrend": (
        "SELECT date_trunc('day', created_at), sum(quantity * unit_price), count(*), sum(quantity) "
        "FROM bench_sales GROUP BY 1 ORDER BY 1"
    ),
}


def postgres_runs(dsn: str, frame: pd.DataFrame, repeat: int) -> dict[str, Any]:
    """PostgreSQL: the rows loaded with COPY into a temporary table, then one GROUP BY query per metric."""
    csv = frame.to_csv(index=False)
    connection = psycopg2.connect(dsn)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TEMPORARY TABLE bench_sales (order_id bigint, product text, category text, region text, "
                "quantity int, unit_price numeric(12, 2), created_at timestamptz)"
            )
            started = time.perf_counter()
            cursor.copy_expert("COPY bench_sales FROM STDIN WITH (FORMAT csv, HEADER true)", io.StringIO(csv))
            cursor.execute("ANALYZE bench_sales")
            load = time.perf_counter() - started

            def aggregate() -> dict[str, Any]:
                answers = {}
                for metric, query in POSTGRES_QUERIES.items():
                    cursor.execute(query)
                    answers[metric] = cursor.fetchall()
                return answers

            seconds, answers = timed(aggregate, repeat)
    finally:
        connection.close()
    count, revenue, _ = answers["totalRevenue"][0]
    return {
        "copy_s": round(load, 3),
        **figures(len(frame), seconds),
        "report": {
            "revenue": round(float(revenue), 2),
            "orders": count,
            "top": [r[0] for r in answers["topProducts"]],
        },
    }


def service_pid(env: dict[str, str], started: Any) -> int:
    if started is not None:
        return started.handles["pathway"].process.pid
    port = urlparse(env["WFP_PATHWAY_URL"]).port
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid:
            return connection.pid
    raise SystemExit(f"no local process listens on {env['WFP_PATHWAY_URL']}: cannot measure its memory")


@contextlib.contextmanager
def services() -> Iterator[tuple[dict[str, str], Any]]:
    """The WFP_* environment of the services, and the embedded stack if this script started one."""
    if all(os.environ.get(name) for name in ("WFP_PG_DSN", "WFP_S3_ENDPOINT", "WFP_PATHWAY_URL")):
        yield dict(os.environ), None
        return
    from workflow_platform.stack import EmbeddedStack

    with tempfile.TemporaryDirectory() as state, EmbeddedStack(Path(state), services=SERVICES) as stack:
        yield {**os.environ, **stack.env}, stack


def object_store(env: dict[str, str]) -> Minio:
    url = urlparse(env["WFP_S3_ENDPOINT"])
    store = Minio(
        url.netloc,
        access_key=env["WFP_S3_ACCESS_KEY"],
        secret_key=env["WFP_S3_SECRET_KEY"],
        region=env.get("WFP_S3_REGION", "us-east-1"),
        secure=url.scheme == "https",
    )
    if not store.bucket_exists(BUCKET):
        store.make_bucket(BUCKET)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--formats", nargs="+", choices=["parquet", "csv", "jsonl"], default=["parquet", "csv", "jsonl"]
    )
    args = parser.parse_args()

    load_before = os.getloadavg()
    with services() as (env, stack):
        memory = PeakRss(service_pid(env, stack))
        store = object_store(env)
        idle_rss = memory.now_mb()
        results = []
        for rows in args.sizes:
            frame = sales(rows)
            pathway = pathway_runs(env, store, memory, frame, args.formats, args.repeat)
            in_pandas = pandas_runs(store, frame, args.repeat)
            in_postgres = postgres_runs(env["WFP_PG_DSN"], frame, args.repeat)
            agrees = all(
                abs(other["report"]["revenue"] - pathway["report"]["revenue"]) < 0.01
                and other["report"]["orders"] == pathway["report"]["orders"]
                and other["report"]["top"] == pathway["report"]["top"]
                for other in (in_pandas, in_postgres)
            )
            results.append(
                {
                    "rows": rows,
                    "pathway": pathway,
                    "pandas": in_pandas,
                    "postgres": in_postgres,
                    "agree": agrees,
                }
            )
        idle_after = memory.now_mb()

    at_target = next((r for r in results if r["rows"] == TARGET["rows"]), None)
    target_met = None
    if at_target is not None:
        target_met = {
            fmt: at_target["pathway"][fmt]["latency_s"]["median"] < TARGET["seconds"]
            and at_target["pathway"][fmt]["peak_rss_mb"] < TARGET["rss_mb"]
            for fmt in args.formats
        }
    print(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before]},
                "target": TARGET,
                "target_met": target_met,
                "service_rss_mb": {"idle_before": idle_rss, "idle_after": idle_after},
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
