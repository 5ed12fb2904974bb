"""The ETL pipelines of the Pathway service, against the embedded stack: every answer is checked against an
independent pandas computation on the same rows; inputs by reference (csv, jsonl, parquet in the real S3 server)
must give the answer inline rows give; and the workflows that use them run end to end through Dagster.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from minio import Minio

from workflow_platform.orchestration.catalog import check_document
from workflow_platform.orchestration.job import build_job
from workflow_platform.pathway_service.pipelines.fraud import rules as fraud_rules
from workflow_platform.pathway_service.pipelines.risk.report import ACTIONS
from workflow_platform.pathway_service.pipelines.sales import rows as sales_rows
from workflow_platform_tests.conftest import fetch, read_json_object, stream_messages

FIXTURES = Path(__file__).parent / "fixtures"
METRICS = ["totalRevenue", "topProducts", "regionalBreakdown", "hourlyTrend", "dailyTrend"]
MONEY = 0.005 + 1e-6  # results are rounded to the cent
SHARE = 0.00005 + 1e-9  # shares to 4 decimals
START = dt.datetime(2025, 10, 28, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def service(stack_env: dict[str, str]) -> str:
    return stack_env["WFP_PATHWAY_URL"]


@pytest.fixture(scope="module")
def bucket(stack_env: dict[str, str]) -> str:
    return stack_env["WFP_S3_BUCKET"]


def run(service: str, pipeline: str, body: Any) -> requests.Response:
    # NaN travels as the JSON extension Python writes and reads; the service accepts it like null.
    data = json.dumps(body, allow_nan=True)
    headers = {"Content-Type": "application/json"}
    return requests.post(f"{service}/pipelines/{pipeline}/run", data=data, headers=headers, timeout=300)


def answer(service: str, pipeline: str, body: Any) -> dict[str, Any]:
    response = run(service, pipeline, body)
    assert response.status_code == 200, response.text
    return response.json()


def put_table(client: Minio, bucket: str, key: str, frame: pd.DataFrame, fmt: str) -> dict[str, str]:
    """Write `frame` to the store as csv, jsonl or parquet; the reference to give the service."""
    buffer = io.BytesIO()
    if fmt == "csv":
        frame.to_csv(buffer, index=False)
    elif fmt == "jsonl":
        frame.to_json(buffer, orient="records", lines=True, date_format="iso")
    else:
        frame.to_parquet(buffer, index=False)
    data = buffer.getvalue()
    client.put_object(bucket, key, io.BytesIO(data), len(data))
    return {"ref": f"s3://{bucket}/{key}", "format": fmt}


# --- sales: an independent computation ------------------------------------------------------------------------


def present(value: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return not (isinstance(value, str) and not value.strip())


def field(row: dict[str, Any], *names: str) -> Any:
    for source in (row, row.get("data") if isinstance(row.get("data"), dict) else {}):
        for name in names:
            if present(source.get(name)):
                return source[name]
    return None


def number(value: Any) -> float | None | str:
    """The finite number a value stands for; None if absent; "invalid" otherwise."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "invalid"
    try:
        parsed = float(value)
    except (TypeError, ValueError):
        return "invalid"
    return parsed if math.isfinite(parsed) else "invalid"


def seconds(value: Any) -> float | None | str:
    """Epoch seconds of a time (naive = UTC; numbers are epoch s, or ms when huge); None; or "invalid"."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / 1000 if abs(value) >= 1e11 else float(value)
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return "invalid"
    return (stamp if stamp.tzinfo else stamp.tz_localize("UTC")).timestamp()


def text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def sales_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One line per row: its amount (or why it has none), units, product, category, region, time."""
    lines = []
    for row in rows:
        amount = number(field(row, "amount"))
        quantity = number(field(row, "quantity"))
        price = number(field(row, "unit_price", "price"))
        skip = None
        if amount == "invalid":
            skip = sales_rows.BAD_AMOUNT
        elif amount is None:
            if "invalid" in (quantity, price):
                skip = sales_rows.BAD_AMOUNT
            elif quantity is None or price is None:
                skip = sales_rows.NO_AMOUNT
            else:
                amount = quantity * price
        when = seconds(field(row, "created_at", "timestamp"))
        lines.append(
            {
                "amount": amount if skip is None else np.nan,
                "amount_skip": skip,
                "units": quantity if isinstance(quantity, float) else 0.0,
                "product": text(field(row, "product", "product_name")),
                "category": text(field(row, "category")),
                "region": text(field(row, "region")),
                "seconds": when if isinstance(when, float) else np.nan,
                "time_skip": {None: sales_rows.NO_TIME, "invalid": sales_rows.BAD_TIME}.get(when)
                if not isinstance(when, float)
                else None,
            }
        )
    columns = ["amount", "amount_skip", "units", "product", "category", "region", "seconds", "time_skip"]
    return pd.DataFrame(lines, columns=columns)


def typed_sales_lines(frame: pd.DataFrame) -> pd.DataFrame:
    """`sales_frame` of rows whose columns are typed (the frames of `typed_sales_frame`), vectorised."""
    computed = frame["quantity"] * frame["unit_price"]
    amount = frame["amount"].where(frame["amount"].notna(), computed)
    return pd.DataFrame(
        {
            "amount": amount,
            "amount_skip": np.where(amount.isna(), sales_rows.NO_AMOUNT, None),
            "units": frame["quantity"].fillna(0.0),
            "product": frame["product"],
            "category": frame["category"],
            "region": frame["region"],
            "seconds": (frame["created_at"] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1),
            "time_skip": np.where(frame["created_at"].isna(), sales_rows.NO_TIME, None),
        }
    )


def expected_sales(frame: pd.DataFrame, top_n: int = 10) -> dict[str, dict[str, Any]]:
    """The report's metrics from the lines of `sales_frame`."""
    counted = frame[frame["amount_skip"].isna()]
    amount_skips = frame["amount_skip"].dropna().value_counts().to_dict()

    def skipped(extra: pd.Series) -> dict[str, Any]:
        reasons = dict(amount_skips)
        for reason, count in extra.dropna().value_counts().items():
            reasons[reason] = reasons.get(reason, 0) + count
        return {"rows": sum(reasons.values()), "reasons": reasons}

    refunds = counted[counted["amount"] < 0]
    expected: dict[str, dict[str, Any]] = {
        "totalRevenue": {
            "revenue": counted["amount"].sum(),
            "orderLines": len(counted),
            "averageLineValue": counted["amount"].mean() if len(counted) else None,
            "units": counted["units"].sum(),
            "refunds": {"orderLines": len(refunds), "amount": refunds["amount"].sum()},
            "rowsUsed": len(counted),
            "skipped": skipped(pd.Series(dtype=object)),
        }
    }
    for metric, column, reason in (
        ("topProducts", "product", sales_rows.NO_PRODUCT),
        ("regionalBreakdown", "region", sales_rows.NO_REGION),
    ):
        used = counted[counted[column].notna()]
        groups = used.groupby(column).agg(
            revenue=("amount", "sum"),
            orderLines=("amount", "size"),
            units=("units", "sum"),
            category=("category", "max"),
        )
        total = used["amount"].sum()
        groups["share"] = groups["revenue"] / total if total else None
        groups["cents"] = groups["revenue"].round(2)
        groups = groups.reset_index().sort_values(["cents", column], ascending=[False, True])
        entries = groups.to_dict("records")
        expected[metric] = {
            "entries": entries[:top_n] if metric == "topProducts" else entries,
            "count": len(groups),
            "revenue": total,
            "rowsUsed": len(used),
            "skipped": skipped(counted[column].isna().map({True: reason, False: None})),
        }
    for metric, period, shown in (
        ("hourlyTrend", 3600, "%Y-%m-%dT%H:00:00Z"),
        ("dailyTrend", 86400, "%Y-%m-%d"),
    ):
        used = counted[counted["time_skip"].isna()]
        start = (used["seconds"] // period * period).map(
            lambda s, shown=shown: pd.Timestamp(s, unit="s", tz="UTC").strftime(shown)
        )
        groups = used.groupby(start).agg(
            revenue=("amount", "sum"), orderLines=("amount", "size"), units=("units", "sum")
        )
        expected[metric] = {
            "entries": groups.reset_index(names="key").to_dict("records"),
            "rowsUsed": len(used),
            "skipped": skipped(counted["time_skip"]),
        }
    return expected


def assert_sales_report(
    report: dict[str, Any], rows: list[dict[str, Any]] | pd.DataFrame, metrics=METRICS, top_n=10
) -> None:
    """Compare with pandas: `rows` as given to the service, or the lines of `typed_sales_lines`."""
    lines = rows if isinstance(rows, pd.DataFrame) else sales_frame(rows)
    expected = expected_sales(lines, top_n)
    assert report["pipelineId"] == "sales-aggregation-pipeline"
    assert report["rowCount"] == len(lines)
    assert list(report["metrics"]) == list(metrics)
    for metric in metrics:
        got, want = report["metrics"][metric], expected[metric]
        assert got["rowsUsed"] == want["rowsUsed"], metric
        assert got["skipped"] == want["skipped"], metric
        if metric == "totalRevenue":
            assert got["revenue"] == pytest.approx(want["revenue"], abs=MONEY)
            assert got["orderLines"] == want["orderLines"]
            if want["averageLineValue"] is None:
                assert got["averageLineValue"] is None
            else:
                assert got["averageLineValue"] == pytest.approx(want["averageLineValue"], abs=MONEY)
            assert got["units"] == pytest.approx(want["units"])
            assert got["refunds"]["orderLines"] == want["refunds"]["orderLines"]
            assert got["refunds"]["amount"] == pytest.approx(want["refunds"]["amount"], abs=MONEY)
            continue
        listed, key = {
            "topProducts": ("products", "product"),
            "regionalBreakdown": ("regions", "region"),
            "hourlyTrend": ("hours", "hour"),
            "dailyTrend": ("days", "date"),
        }[metric]
        source_key = {"topProducts": "product", "regionalBreakdown": "region"}.get(metric, "key")
        assert [entry[key] for entry in got[listed]] == [entry[source_key] for entry in want["entries"]], (
            metric
        )
        for entry, wanted in zip(got[listed], want["entries"], strict=True):
            assert entry["revenue"] == pytest.approx(wanted["revenue"], abs=MONEY)
            assert entry["orderLines"] == wanted["orderLines"]
            assert entry["units"] == pytest.approx(wanted["units"])
            if metric in ("topProducts", "regionalBreakdown"):
                if wanted["share"] is None or (
                    isinstance(wanted["share"], float) and math.isnan(wanted["share"])
                ):
                    assert entry["share"] is None
                else:
                    assert entry["share"] == pytest.approx(wanted["share"], abs=SHARE)
        if metric == "topProducts":
            assert [entry["rank"] for entry in got["products"]] == list(range(1, len(got["products"]) + 1))
            assert [entry["category"] for entry in got["products"]] == [
                None if pd.isna(wanted["category"]) else wanted["category"] for wanted in want["entries"]
            ]
            assert got["productCount"] == want["count"]
        if metric in ("topProducts", "regionalBreakdown"):
            assert got["revenue"] == pytest.approx(want["revenue"], abs=MONEY)


def mixed_sales_rows(count: int = 400, seed: int = 7) -> list[dict[str, Any]]:
    """Sales rows with every kind of gap and oddity the pipeline must count rather than crash on."""
    rng = random.Random(seed)
    products = ["anvil", "bolt", "crate", "drill", "easel", "flask", "gauge"]
    rows: list[dict[str, Any]] = []
    for index in range(count):
        row: dict[str, Any] = {
            "order_id": index,
            "product": rng.choice(products),
            "category": rng.choice(["tools", "storage", None]),
            "region": rng.choice(["north", "south", "east", "west"]),
            "quantity": rng.randint(1, 5),
            "unit_price": round(rng.uniform(1, 100), 2),
            "created_at": (START + dt.timedelta(minutes=rng.randint(0, 3 * 24 * 60))).isoformat(),
        }
        if index % 10 == 0:
            row["amount"] = round(row["quantity"] * row["unit_price"] * 0.9, 2)  # a discount: amount wins
        if index % 17 == 0:
            row["amount"] = -round(rng.uniform(1, 50), 2)  # a refund
        if index % 19 == 0:
            row["product_name"] = row.pop("product")
        if index % 23 == 0:
            del row["region"]
        if index % 29 == 0:
            row["created_at"] = None
        if index % 31 == 0:
            row["amount"] = float("nan")  # missing: quantity x unit_price stands in
        if index % 37 == 0:
            row["amount"] = "n/a"
        if index % 41 == 0:
            row["unit_price"] = "12.50"  # numeric text
        if index % 43 == 0:
            row["created_at"] = "not a date"
        if index % 47 == 0:
            row.pop("amount", None)
            del row["quantity"]
        if index % 53 == 0:
            row["created_at"] = int((START + dt.timedelta(hours=index)).timestamp() * 1000)  # epoch ms
        if index % 59 == 0:
            row["amount"] = True
        if index % 61 == 0:
            row["product"] = "  "
        rows.append(row)
    return rows


def typed_sales_frame(count: int, seed: int = 11) -> pd.DataFrame:
    """Sales with one type per column (what csv, jsonl and parquet hold), gaps included."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "order_id": np.arange(count),
            "product": np.array([f"p{i:02d}" for i in range(40)], dtype=object)[rng.integers(0, 40, count)],
            "category": np.array(["books", "toys", "garden"], dtype=object)[rng.integers(0, 3, count)],
            "region": np.array(["north", "south", "east", "west", "central"], dtype=object)[
                rng.integers(0, 5, count)
            ],
            "quantity": rng.integers(1, 10, count).astype(float),
            "unit_price": np.round(rng.random(count) * 100, 2),
            "amount": np.where(rng.random(count) < 0.2, np.round(rng.normal(50, 80, count), 2), np.nan),
            "created_at": pd.Timestamp("2025-10-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 10 * 86400, count), unit="s"),
        }
    )
    frame.loc[rng.random(count) < 0.03, "product"] = None
    frame.loc[rng.random(count) < 0.03, "region"] = None
    frame.loc[rng.random(count) < 0.03, "quantity"] = np.nan
    frame.loc[rng.random(count) < 0.02, "created_at"] = pd.NaT
    return frame


def rows_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame as JSON rows: timestamps as ISO text, missing values as null."""
    return json.loads(frame.to_json(orient="records", date_format="iso"))


# --- sales tests -------------------------------------------------------------------------------------------


def test_sales_matches_pandas_on_mixed_rows(service: str) -> None:
    rows = mixed_sales_rows()
    report = answer(service, "sales-aggregation-pipeline", {"salesData": rows, "reportType": "daily-summary"})
    assert report["reportType"] == "daily-summary"
    assert report["salesData"] == {"source": "inline", "rows": len(rows)}
    assert_sales_report(report, rows)
    skipped = report["metrics"]["totalRevenue"]["skipped"]["reasons"]
    assert set(skipped) == {sales_rows.BAD_AMOUNT, sales_rows.NO_AMOUNT}
    assert report["metrics"]["totalRevenue"]["refunds"]["orderLines"] > 0
    assert sales_rows.BAD_TIME in report["metrics"]["hourlyTrend"]["skipped"]["reasons"]


def test_sales_rows_object_and_metric_selection(service: str) -> None:
    rows = mixed_sales_rows(60, seed=3)
    body = {
        "salesData": {"rows": rows, "rowCount": len(rows)},
        "includeMetrics": ["topProducts", "totalRevenue"],
    }
    report = answer(service, "sales-aggregation-pipeline", {**body, "topN": 2})
    assert_sales_report(report, rows, metrics=["topProducts", "totalRevenue"], top_n=2)
    assert len(report["metrics"]["topProducts"]["products"]) == 2


def test_sales_empty_input(service: str) -> None:
    report = answer(service, "sales-aggregation-pipeline", {"salesData": []})
    assert_sales_report(report, [])
    assert report["metrics"]["totalRevenue"] == {
        "revenue": 0.0,
        "orderLines": 0,
        "averageLineValue": None,
        "units": 0,
        "refunds": {"orderLines": 0, "amount": 0.0},
        "rowsUsed": 0,
        "skipped": {"rows": 0, "reasons": {}},
    }
    assert report["metrics"]["topProducts"]["products"] == []


def test_sales_single_row(service: str) -> None:
    rows = [{"product": "kettle", "region": "west", "amount": 19.99, "created_at": "2025-10-31T23:59:59Z"}]
    report = answer(service, "sales-aggregation-pipeline", {"salesData": rows})
    assert_sales_report(report, rows)
    (product,) = report["metrics"]["topProducts"]["products"]
    assert product == {
        "rank": 1,
        "product": "kettle",
        "category": None,
        "revenue": 19.99,
        "orderLines": 1,
        "units": 0,
        "share": 1.0,
    }
    assert report["metrics"]["dailyTrend"]["days"] == [
        {"date": "2025-10-31", "revenue": 19.99, "orderLines": 1, "units": 0}
    ]


def test_sales_ties_in_top_products_break_by_name(service: str) -> None:
    rows = [{"product": name, "amount": 10.0} for name in ("zeta", "alpha", "mid", "beta")]
    rows += [{"product": "alpha", "amount": 0.004}]  # below the cent: still a tie with the others
    rows += [{"product": "top", "amount": 25.0}]
    report = answer(service, "sales-aggregation-pipeline", {"salesData": rows, "topN": 3})
    assert_sales_report(report, rows, top_n=3)
    assert [p["product"] for p in report["metrics"]["topProducts"]["products"]] == ["top", "alpha", "beta"]


def test_sales_nan_and_negative_amounts(service: str) -> None:
    rows = [
        {"product": "a", "amount": 100.0},
        {"product": "a", "amount": -30.0},  # a refund lowers revenue
        {"product": "b", "amount": float("nan")},  # missing, and nothing to compute it from
        {"product": "b", "amount": float("nan"), "quantity": 2, "unit_price": 5},  # missing: 2 x 5 stands in
        {"product": "c", "amount": "-"},
        {"product": "c", "amount": float("inf")},
    ]
    report = answer(
        service, "sales-aggregation-pipeline", {"salesData": rows, "includeMetrics": ["totalRevenue"]}
    )
    assert_sales_report(report, rows, metrics=["totalRevenue"])
    total = report["metrics"]["totalRevenue"]
    assert (total["revenue"], total["orderLines"], total["refunds"]) == (
        80.0,
        3,
        {"orderLines": 1, "amount": -30.0},
    )
    assert total["skipped"] == {"rows": 3, "reasons": {sales_rows.NO_AMOUNT: 1, sales_rows.BAD_AMOUNT: 2}}


def test_sales_of_event_rows_skip_everything(service: str) -> None:
    # What the original sales workflow sends: orchestrator.events rows, which carry no amounts.
    rows = [
        {
            "id": 1,
            "event_type": "workflow_completed",
            "data": {"workflow": "x"},
            "created_at": "2025-10-31T12:00:00+00:00",
        },
        {
            "id": 2,
            "event_type": "report_generated",
            "data": {"status": "completed"},
            "created_at": "2025-10-31T13:00:00+00:00",
        },
    ]
    body = {"salesData": {"rows": rows, "rowCount": 2}, "reportType": "daily-summary"}
    report = answer(service, "sales-aggregation-pipeline", body)
    assert_sales_report(report, rows)
    for metric in METRICS:
        assert report["metrics"][metric]["rowsUsed"] == 0
        assert report["metrics"][metric]["skipped"] == {"rows": 2, "reasons": {sales_rows.NO_AMOUNT: 2}}


def test_concurrent_sales_requests_get_their_own_answers(service: str) -> None:
    # Different bodies, and the same body twice at once (which share their staged input).
    bodies = [{"salesData": mixed_sales_rows(50 + 10 * i, seed=i)} for i in range(5)]
    bodies.append(bodies[0])
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        reports = list(pool.map(lambda body: answer(service, "sales-aggregation-pipeline", body), bodies))
    for body, report in zip(bodies, reports, strict=True):
        assert_sales_report(report, body["salesData"])


def test_sales_reads_the_payload_of_event_rows(service: str) -> None:
    rows = [
        {"id": 1, "event_type": "order_placed", "data": {"product": "a", "amount": 5, "region": "n"}},
        {
            "id": 2,
            "event_type": "order_placed",
            "data": json.dumps({"product": "b", "quantity": 2, "unit_price": 4}),
        },
        {"id": 3, "event_type": "order_placed", "product": "c", "data": {"product": "ignored", "amount": 1}},
    ]
    report = answer(
        service, "sales-aggregation-pipeline", {"salesData": rows, "includeMetrics": ["topProducts"]}
    )
    products = {p["product"]: p["revenue"] for p in report["metrics"]["topProducts"]["products"]}
    assert products == {"a": 5.0, "b": 8.0, "c": 1.0}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_sales_by_reference_equals_inline(service: str, s3: Minio, bucket: str, fmt: str) -> None:
    frame = typed_sales_frame(3000)
    rows = rows_of(frame)
    ref = put_table(s3, bucket, f"tests/pipelines/sales-{fmt}.{fmt}", frame, fmt)
    reference = {**ref, "rowCount": 3000, "columns": list(frame.columns)}  # as a postgres select returns it
    by_reference = answer(service, "sales-aggregation-pipeline", {"salesData": reference})
    inline = answer(service, "sales-aggregation-pipeline", {"salesData": rows})
    assert by_reference.pop("salesData") == {"source": ref["ref"], "format": fmt, "rows": 3000}
    inline.pop("salesData")
    assert by_reference == inline
    assert_sales_report(inline, rows)
    assert_sales_report(inline, typed_sales_lines(frame))


def test_reference_written_like_a_postgres_select(service: str, s3: Minio, bucket: str) -> None:
    # numeric -> decimal, timestamptz -> timestamp, jsonb -> JSON text: what a select writes to parquet.
    rows = [
        {"id": 1, "amount": "19.90", "created_at": "2025-10-31T10:00:00+00:00", "data": None},
        {
            "id": 2,
            "amount": None,
            "created_at": "2025-10-31T11:30:00+00:00",
            "data": '{"product": "a", "amount": 5}',
        },
        {"id": 3, "amount": "-4.10", "created_at": None, "data": '{"product": "b", "region": "west"}'},
    ]
    table = pa.table(
        {
            "id": pa.array([row["id"] for row in rows], pa.int64()),
            "amount": pa.array(
                [row["amount"] and Decimal(row["amount"]) for row in rows], pa.decimal128(12, 2)
            ),
            "created_at": pa.array(
                [row["created_at"] and dt.datetime.fromisoformat(row["created_at"]) for row in rows],
                pa.timestamp("us", tz="UTC"),
            ),
            "data": pa.array([row["data"] for row in rows], pa.string()),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    s3.put_object(
        bucket, "tests/pipelines/select.parquet", io.BytesIO(buffer.getvalue()), len(buffer.getvalue())
    )
    reference = {"ref": f"s3://{bucket}/tests/pipelines/select.parquet", "format": "parquet", "rowCount": 3}
    report = answer(service, "sales-aggregation-pipeline", {"salesData": reference})
    inline_rows = [
        {
            **row,
            "amount": row["amount"] and float(row["amount"]),
            "data": row["data"] and json.loads(row["data"]),
        }
        for row in rows
    ]
    assert_sales_report(report, inline_rows)
    assert report["metrics"]["totalRevenue"]["revenue"] == 20.8


def test_sales_by_reference_over_many_batches(service: str, s3: Minio, bucket: str) -> None:
    count = sales_rows.BATCH_ROWS + 1234
    frame = typed_sales_frame(count, seed=5)
    ref = put_table(s3, bucket, "tests/pipelines/sales-large.parquet", frame, "parquet")
    del ref["format"]  # told by the key's suffix
    report = answer(service, "sales-aggregation-pipeline", {"salesData": ref, "topN": 50})
    assert report["rowCount"] == count
    assert_sales_report(report, typed_sales_lines(frame), top_n=50)


def test_unreadable_references_are_422_naming_the_ref(service: str, s3: Minio, bucket: str) -> None:
    missing = f"s3://{bucket}/tests/pipelines/no-such-object.parquet"
    response = run(
        service, "sales-aggregation-pipeline", {"salesData": {"ref": missing, "format": "parquet"}}
    )
    assert response.status_code == 422
    assert response.json() == {
        "error": f"invalid input for sales-aggregation-pipeline: salesData: cannot read {missing}: no such object",
        "field": "salesData",
        "ref": missing,
    }
    not_parquet = put_table(s3, bucket, "tests/pipelines/really-csv.parquet", typed_sales_frame(5), "csv")
    response = run(service, "sales-aggregation-pipeline", {"salesData": {**not_parquet, "format": "parquet"}})
    assert response.status_code == 422
    assert f"cannot read {not_parquet['ref']}: not a valid parquet file" in response.json()["error"]
    no_bucket = "s3://no-such-bucket-here/x.csv"
    response = run(service, "fraud-detection-pipeline", {"transactions": {"ref": no_bucket}})
    assert response.status_code == 422
    assert response.json()["error"].endswith(f"transactions: cannot read {no_bucket}: no such bucket")


INVALID_SALES = {
    "no-sales-data": ({}, "salesData", "Field required"),
    "sales-data-number": ({"salesData": 5}, "salesData", "expected a list of row objects"),
    "row-not-object": ({"salesData": [{"amount": 1}, 7]}, "salesData", "rows[1] must be an object"),
    "ref-not-s3": ({"salesData": {"ref": "/tmp/x.csv"}}, "salesData", "must be an s3://bucket/key URL"),
    "bad-format": ({"salesData": {"ref": "s3://b/k", "format": "xlsx"}}, "salesData", "must be one of csv"),
    "unknown-metric": (
        {"salesData": [], "includeMetrics": ["profit"]},
        "includeMetrics.0",
        "Input should be",
    ),
    "top-n-zero": ({"salesData": [], "topN": 0}, "topN", "greater than or equal to 1"),
}


@pytest.mark.parametrize(("body", "field_name", "message"), INVALID_SALES.values(), ids=INVALID_SALES.keys())
def test_invalid_sales_input_is_a_422(service: str, body: dict, field_name: str, message: str) -> None:
    response = run(service, "sales-aggregation-pipeline", body)
    assert response.status_code == 422
    problems = response.json()["problems"]
    assert [problem["field"] for problem in problems] == [field_name]
    assert message in problems[0]["message"]
    assert message in response.json()["error"]


# --- fraud: an independent computation ---------------------------------------------------------------------


def haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    lat1, lon1, lat2, lon2 = map(np.radians, (lat1, lon1, lat2, lon2))
    inner = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return float(2 * 6371.0088 * np.arcsin(np.sqrt(inner)))


def expected_fraud(
    transactions: list[dict[str, Any]], profiles: list[dict[str, Any]], rules: dict[str, Any]
) -> list[dict[str, Any]]:
    """Per transaction: each configured rule's status and evidence, and the fraud score."""
    txns = pd.DataFrame(
        {
            "customer": [text(field(t, "customer_id")) for t in transactions],
            "amount": [number(field(t, "amount")) for t in transactions],
            "seconds": [seconds(field(t, "created_at", "timestamp")) for t in transactions],
            "lat": [number(field(t, "latitude", "lat")) for t in transactions],
            "lon": [number(field(t, "longitude", "lon", "lng")) for t in transactions],
        }
    ).map(lambda v: np.nan if v is None or v == "invalid" else v)
    known: dict[str, dict[str, Any]] = {}
    for profile in profiles:
        known.setdefault(text(field(profile, "customer_id")), profile)
    results = []
    for index, txn in txns.iterrows():
        customer = None if pd.isna(txn["customer"]) else txn["customer"]
        profile = known.get(customer) if customer is not None else None
        risk = number(field(profile or {}, "risk_score"))
        risk = 0.0 if not isinstance(risk, float) else min(1.0, max(0.0, risk / 100 if risk > 1 else risk))
        outcomes: dict[str, dict[str, Any]] = {}
        same = txns[txns["customer"] == customer] if customer is not None else txns.iloc[0:0]
        if "velocityCheck" in rules:
            settings = rules["velocityCheck"]
            if customer is None or pd.isna(txn["seconds"]):
                outcomes["velocityCheck"] = {"status": "not evaluable"}
            else:
                window = same[
                    (same["seconds"] >= txn["seconds"] - 3600) & (same["seconds"] <= txn["seconds"])
                ]
                amount = window["amount"].fillna(0).sum()
                fired = len(window) > settings["maxTransactionsPerHour"] or (
                    settings.get("amountThreshold") is not None and amount > settings["amountThreshold"]
                )
                outcomes["velocityCheck"] = {
                    "fired": fired,
                    "transactionsInHour": len(window),
                    "amountInHour": amount,
                }
        if "geographicAnomaly" in rules:
            home = [
                number(field(profile or {}, "home_latitude")),
                number(field(profile or {}, "home_longitude")),
            ]
            if pd.isna(txn["lat"]) or pd.isna(txn["lon"]) or not all(isinstance(h, float) for h in home):
                outcomes["geographicAnomaly"] = {"status": "not evaluable"}
            else:
                distance = haversine(txn["lat"], txn["lon"], *home)
                fired = distance > rules["geographicAnomaly"]["maxDistanceKm"]
                outcomes["geographicAnomaly"] = {"fired": fired, "distanceKm": distance}
        if "amountAnomaly" in rules:
            mean = number(field(profile or {}, "avg_amount"))
            std = number(field(profile or {}, "std_amount"))
            others = same.drop(index, errors="ignore")["amount"].dropna()
            if pd.isna(txn["amount"]):
                baseline = None
            elif isinstance(mean, float) and isinstance(std, float) and std > 0:
                baseline = (mean, std)
            elif len(others) >= 2 and others.std(ddof=1) > 1e-6:
                baseline = (others.mean(), others.std(ddof=1))
            else:
                baseline = None
            if baseline is None:
                outcomes["amountAnomaly"] = {"status": "not evaluable"}
            else:
                z = (txn["amount"] - baseline[0]) / baseline[1]
                fired = abs(z) > rules["amountAnomaly"]["deviationThreshold"]
                outcomes["amountAnomaly"] = {"fired": fired, "zScore": z}
        if "timePattern" in rules:
            if pd.isna(txn["seconds"]):
                outcomes["timePattern"] = {"status": "not evaluable"}
            else:
                hour = dt.datetime.fromtimestamp(txn["seconds"], dt.UTC).hour
                outcomes["timePattern"] = {
                    "fired": hour in rules["timePattern"]["unusualHours"],
                    "hourUtc": hour,
                }
        kept = 1 - 0.5 * risk
        default_weights = {
            "velocityCheck": 0.5,
            "geographicAnomaly": 0.4,
            "amountAnomaly": 0.5,
            "timePattern": 0.2,
        }
        for rule, outcome in outcomes.items():
            if outcome.get("fired"):
                kept *= 1 - rules[rule].get("weight", default_weights[rule])
        results.append({"outcomes": outcomes, "score": 1 - kept})
    return results


def assert_fraud_analysis(
    result: dict[str, Any], transactions: list[dict[str, Any]], profiles: list[dict[str, Any]], rules: dict
) -> None:
    expected = expected_fraud(transactions, profiles, rules)
    assert result["pipelineId"] == "fraud-detection-pipeline"
    assert len(result["transactions"]) == len(transactions)
    fired_counts = dict.fromkeys(rules, 0)
    for got, want, source in zip(result["transactions"], expected, transactions, strict=True):
        assert got["transactionId"] == source.get("id")
        assert got["fraudScore"] == pytest.approx(want["score"], abs=1e-4)
        assert set(got["rules"]) == set(rules)
        for rule, outcome in want["outcomes"].items():
            judged = got["rules"][rule]
            if outcome.get("status") == "not evaluable":
                assert judged["status"] == "not evaluable" and judged["reason"], (rule, judged)
                continue
            assert judged["status"] == ("fired" if outcome["fired"] else "passed"), (rule, judged, outcome)
            fired_counts[rule] += outcome["fired"]
            for evidence, value in outcome.items():
                if evidence != "fired":
                    assert judged[evidence] == pytest.approx(value, rel=1e-3, abs=0.06), (rule, evidence)
        assert got["rulesFired"] == [
            rule for rule in fraud_rules.RULE_NAMES if want["outcomes"].get(rule, {}).get("fired")
        ]
    summary = result["summary"]
    assert summary["transactions"] == len(transactions)
    assert summary["rulesFired"] == fired_counts
    if expected:
        assert summary["maxScore"] == pytest.approx(max(w["score"] for w in expected), abs=1e-4)
        assert summary["averageScore"] == pytest.approx(np.mean([w["score"] for w in expected]), abs=1e-4)


ALL_RULES = {
    "velocityCheck": {"maxTransactionsPerHour": 3, "amountThreshold": 1500},
    "geographicAnomaly": {"maxDistanceKm": 500},
    "amountAnomaly": {"deviationThreshold": 2.0},
    "timePattern": {"unusualHours": [1, 2, 3, 4, 5]},
}


def fraud_rows(count: int = 120, seed: int = 3) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(seed)
    homes = {"c1": (52.52, 13.40), "c2": (48.85, 2.35), "c3": (40.71, -74.0), "c4": (35.68, 139.69)}
    transactions = []
    for index in range(count):
        customer = rng.choice([*homes, "c5", None])
        lat, lon = homes.get(customer, (0.0, 0.0))
        if rng.random() < 0.15:
            lat, lon = rng.uniform(-60, 60), rng.uniform(-170, 170)  # far from home
        row: dict[str, Any] = {
            "id": 1000 + index,
            "customer_id": customer,
            "amount": round(rng.lognormvariate(4, 1) if rng.random() > 0.05 else rng.uniform(3000, 9000), 2),
            "created_at": (START + dt.timedelta(minutes=rng.randint(0, 36 * 60))).isoformat(),
            "latitude": lat + rng.uniform(-0.5, 0.5),
            "longitude": lon + rng.uniform(-0.5, 0.5),
        }
        if index % 11 == 0:
            row["created_at"] = None
        if index % 13 == 0:
            del row["latitude"]
        if index % 17 == 0:
            row["amount"] = None
        transactions.append(row)
    profiles = [
        {
            "customer_id": "c1",
            "risk_score": 0.1,
            "avg_amount": 60.0,
            "std_amount": 40.0,
            "home_latitude": 52.52,
            "home_longitude": 13.40,
        },
        {"customer_id": "c2", "risk_score": 85, "home_latitude": 48.85, "home_longitude": 2.35},
        {"customer_id": "c3", "risk_score": 0.4, "avg_amount": 100.0, "std_amount": 0.0},
        {"customer_id": "c1", "risk_score": 0.9},  # a second profile of c1: the first one counts
        {"risk_score": 1.0},  # no customer: ignored
    ]
    return transactions, profiles


# --- fraud tests -------------------------------------------------------------------------------------------


def test_fraud_matches_an_independent_computation(service: str) -> None:
    transactions, profiles = fraud_rows()
    body = {"transactions": transactions, "customerProfiles": profiles, "rules": ALL_RULES}
    result = answer(service, "fraud-detection-pipeline", body)
    assert_fraud_analysis(result, transactions, profiles, ALL_RULES)
    assert all(result["summary"]["rulesFired"].values()), result["summary"]  # every rule fires somewhere
    assert result["summary"]["withProfile"] == sum(
        t["customer_id"] in ("c1", "c2", "c3") for t in transactions
    )
    reasons = {t["rules"]["geographicAnomaly"].get("reason") for t in result["transactions"]}
    assert {fraud_rules.NO_LOCATION, fraud_rules.NO_PROFILE, fraud_rules.NO_HOME} <= reasons


def test_fraud_on_the_original_workflow_shape(service: str) -> None:
    # The original fraud workflow sends id, customer_id, amount and profiles with customer_id, risk_score only.
    transactions = [
        {"id": 1, "customer_id": "7", "amount": 12.5},
        {"id": 2, "customer_id": "7", "amount": 14.0},
        {"id": 3, "customer_id": "7", "amount": 13.0},
        {"id": 4, "customer_id": "7", "amount": 990.0},
        {"id": 5, "customer_id": "8", "amount": 30.0},
    ]
    profiles = [{"customer_id": "7", "risk_score": 0.4}]
    rules = {**ALL_RULES, "amountAnomaly": {"deviationThreshold": 3.0}}
    body = {
        "transactions": {"rows": transactions, "rowCount": 5},
        "customerProfiles": {"rows": profiles},
        "rules": rules,
    }
    result = answer(service, "fraud-detection-pipeline", body)
    assert_fraud_analysis(result, transactions, profiles, rules)
    summary = result["summary"]
    assert summary["notEvaluable"] == {
        "velocityCheck": 5,
        "geographicAnomaly": 5,
        "amountAnomaly": 1,
        "timePattern": 5,
    }
    assert result["transactions"][3]["rulesFired"] == ["amountAnomaly"]


def test_fraud_defaults_one_customer_and_a_rule_subset(service: str) -> None:
    transactions = [
        {"id": f"t{i}", "customer_id": 42, "amount": 10 + i, "timestamp": 1761870000 + 600 * i}
        for i in range(8)
    ]
    only_time = {"timePattern": {"unusualHours": [0, 1, 23]}}
    result = answer(service, "fraud-detection-pipeline", {"transactions": transactions, "rules": only_time})
    assert_fraud_analysis(result, transactions, [], only_time)
    assert list(result["rules"]) == ["timePattern"]
    defaults = answer(service, "fraud-detection-pipeline", {"transactions": transactions})
    assert list(defaults["rules"]) == list(fraud_rules.RULE_NAMES)
    original_rules = {name: rule.model_dump() for name, rule in fraud_rules.DEFAULT_RULES if rule is not None}
    assert_fraud_analysis(defaults, transactions, [], original_rules)


def test_fraud_empty_input(service: str) -> None:
    result = answer(service, "fraud-detection-pipeline", {"transactions": [], "rules": ALL_RULES})
    assert result["transactions"] == []
    assert result["summary"] == {
        "transactions": 0,
        "scoredByModel": 0,
        "alerts": 0,
        "withProfile": 0,
        "rulesFired": dict.fromkeys(ALL_RULES, 0),
        "notEvaluable": dict.fromkeys(ALL_RULES, 0),
        "averageScore": None,
        "maxScore": None,
    }


def test_fraud_by_reference_equals_inline(service: str, s3: Minio, bucket: str) -> None:
    transactions, profiles = fraud_rows(80, seed=9)
    frame = pd.DataFrame(transactions)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    txn_ref = put_table(s3, bucket, "tests/pipelines/transactions.parquet", frame, "parquet")
    profile_ref = put_table(s3, bucket, "tests/pipelines/profiles.jsonl", pd.DataFrame(profiles), "jsonl")
    by_reference = answer(
        service,
        "fraud-detection-pipeline",
        {"transactions": txn_ref, "customerProfiles": profile_ref, "rules": ALL_RULES},
    )
    inline = answer(
        service,
        "fraud-detection-pipeline",
        {"transactions": transactions, "customerProfiles": profiles, "rules": ALL_RULES},
    )
    assert by_reference.pop("input") != inline.pop("input")
    assert by_reference == inline


def test_invalid_fraud_rules_are_a_422(service: str) -> None:
    body = {"transactions": [], "rules": {"timePattern": {"unusualHours": [25]}, "velocity": {}}}
    response = run(service, "fraud-detection-pipeline", body)
    assert response.status_code == 422
    fields = sorted(problem["field"] for problem in response.json()["problems"])
    assert fields == ["rules.timePattern.unusualHours.0", "rules.velocity"]


# --- risk ---------------------------------------------------------------------------------------------------

THRESHOLDS = {"low": 0.3, "medium": 0.6, "high": 0.8, "critical": 0.95}


def expected_levels(scores: list[float], thresholds: dict[str, float]) -> list[str]:
    conditions = [np.array(scores) >= thresholds[level] for level in ("critical", "high", "medium", "low")]
    return list(np.select(conditions, ["critical", "high", "medium", "low"], "minimal"))


def test_risk_scoring_of_a_fraud_analysis(service: str) -> None:
    transactions, profiles = fraud_rows(150, seed=21)
    analysis = answer(
        service,
        "fraud-detection-pipeline",
        {"transactions": transactions, "customerProfiles": profiles, "rules": ALL_RULES},
    )
    risk = answer(service, "risk-scoring-pipeline", {"fraudAnalysis": analysis, "thresholds": THRESHOLDS})
    scored = pd.DataFrame(analysis["transactions"])
    scored["level"] = expected_levels(scored["fraudScore"].tolist(), THRESHOLDS)
    assert [t["riskLevel"] for t in risk["transactions"]] == scored["level"].tolist()
    assert [t["transactionId"] for t in risk["transactions"]] == scored["transactionId"].tolist()
    assert [t["recommendedActions"] for t in risk["transactions"]] == [
        ACTIONS[level] for level in scored["level"]
    ]
    counts = scored["level"].value_counts()
    assert risk["counts"] == {
        level: int(counts.get(level, 0)) for level in ("minimal", "low", "medium", "high", "critical")
    }
    alerting = scored[scored["level"].isin(["medium", "high", "critical"])].copy()
    alerting["position"] = alerting.index
    alerting = alerting.sort_values(["fraudScore", "position"], ascending=[False, True])
    assert [a["transactionId"] for a in risk["alerts"]] == alerting["transactionId"].tolist()
    assert risk["alertCount"] == len(alerting) > 0
    assert all(a["alertId"] == f"risk-{a['transactionId']}" for a in risk["alerts"])
    assert all(
        a["rulesFired"] == t["rulesFired"]
        for a in risk["alerts"]
        for t in analysis["transactions"]
        if t["transactionId"] == a["transactionId"]
    )
    present_levels = [
        level for level in ("minimal", "low", "medium", "high", "critical") if counts.get(level)
    ]
    assert risk["highestRiskLevel"] == present_levels[-1]


def test_risk_thresholds_defaults_and_skipped_rows(service: str, s3: Minio, bucket: str) -> None:
    rows = pd.DataFrame(
        {
            "transactionId": [1, 2, 3, 4, 5, 6],
            "customerId": ["a", "a", "b", "c", "c", None],
            "fraudScore": [0.1, 0.35, 0.65, 0.96, None, 1.7],
            "rulesFired": ["", "timePattern", "velocityCheck,amountAnomaly", "velocityCheck", "", ""],
        }
    )
    ref = put_table(s3, bucket, "tests/pipelines/scored.csv", rows, "csv")
    risk = answer(service, "risk-scoring-pipeline", {"fraudAnalysis": {"transactions": ref, "summary": {}}})
    assert risk["thresholds"] == THRESHOLDS  # the defaults are the original workflow's
    assert [t["riskLevel"] for t in risk["transactions"]] == expected_levels(
        [0.1, 0.35, 0.65, 0.96], THRESHOLDS
    )
    assert risk["transactions"][2]["rulesFired"] == ["velocityCheck", "amountAnomaly"]
    assert risk["skipped"] == {
        "rows": 2,
        "reasons": {"no fraudScore": 1, "fraudScore is not a number between 0 and 1": 1},
    }
    assert [a["transactionId"] for a in risk["alerts"]] == [4, 3]
    assert risk["alerts"][0]["recommendedActions"] == ["review", "notify", "block", "lock"]


def test_risk_rejects_thresholds_that_do_not_rise(service: str) -> None:
    body = {"fraudAnalysis": {"transactions": []}, "thresholds": {"low": 0.5, "medium": 0.4}}
    response = run(service, "risk-scoring-pipeline", body)
    assert response.status_code == 422
    assert "thresholds: Value error, must rise: low <= medium <= high <= critical" in response.json()["error"]
    response = run(service, "risk-scoring-pipeline", {"fraudAnalysis": {"summary": {}}})
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "fraudAnalysis.transactions"


# --- the workflows, end to end through Dagster ------------------------------------------------------------


def execute(document: dict[str, Any]) -> dg.ExecuteInProcessResult:
    spec, problems = check_document(document)
    assert problems == [], [problem.render() for problem in problems]
    result = build_job(spec).execute_in_process(instance=dg.DagsterInstance.get(), raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return result


@contextlib.contextmanager
def inserted(
    pg: psycopg2.extensions.connection, table: str, columns: tuple[str, ...], rows: list[tuple]
) -> Iterator[list[int]]:
    """The ids of `rows` inserted into `table`, deleted again when the block ends."""
    placeholders = ", ".join(["%s"] * len(columns))
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders}) RETURNING id"
    ids = [fetch(pg, insert, *row)[0][0] for row in rows]
    yield ids
    fetch(pg, f"DELETE FROM {table} WHERE id = ANY(%s)", ids)


@pytest.fixture
def order_events(pg) -> Iterator[list[int]]:
    rows = [
        (
            "order_placed",
            {"product": "lamp", "category": "home", "region": "north", "quantity": 2, "unit_price": 30},
        ),
        ("order_placed", {"product": "desk", "category": "office", "region": "south", "amount": 250.0}),
        ("order_placed", {"product": "lamp", "category": "home", "region": "south", "amount": 45.5}),
        ("order_refunded", {"product": "desk", "region": "south", "amount": -250.0}),
        ("order_placed", {"product": "chair", "region": "north"}),  # no amount: skipped
        ("order_placed", {"amount": 12.0}),  # no product, no region
    ]
    events = [(kind, json.dumps(data)) for kind, data in rows]
    with inserted(pg, "orchestrator.events", ("event_type", "data"), events) as ids:
        yield ids


def test_sales_from_events_workflow(stack_env: dict[str, str], s3: Minio, order_events: list[int]) -> None:
    document = json.loads((FIXTURES / "sales-from-events.json").read_text())
    result = execute(document)
    selected = result.output_for_node("select_order_events")
    assert set(order_events) <= {row["id"] for row in selected["rows"]}
    report = result.output_for_node("aggregate_sales")
    metrics = ["totalRevenue", "topProducts", "regionalBreakdown", "dailyTrend"]
    assert_sales_report(report, selected["rows"], metrics=metrics, top_n=3)
    assert report["metrics"]["totalRevenue"]["skipped"]["reasons"].get(sales_rows.NO_AMOUNT, 0) >= 1
    stored = result.output_for_node("store_report")
    assert stored["key"].startswith("reports/sales-from-events/")
    assert read_json_object(s3, stored["bucket"], stored["key"]) == report

    # The same rows passed by reference: the select writes them to the store, the service reads them.
    for fmt in ("parquet", "csv", "jsonl"):
        document["steps"][0]["input"].update(output="ref", format=fmt)
        by_reference = execute(document)
        reference = by_reference.output_for_node("select_order_events")
        assert reference["ref"].startswith("s3://") and reference["format"] == fmt
        answer_by_reference = by_reference.output_for_node("aggregate_sales")
        assert answer_by_reference.pop("salesData") == {
            "source": reference["ref"],
            "format": fmt,
            "rows": len(selected["rows"]),
        }
        assert answer_by_reference == {key: value for key, value in report.items() if key != "salesData"}


@pytest.fixture
def open_transactions(pg) -> Iterator[list[int]]:
    fetch(
        pg,
        "INSERT INTO orchestrator.customer_profiles (customer_id, risk_score, avg_amount, std_amount) VALUES "
        "('screen-1', 0.9, 40, 10), ('screen-2', 0.1, NULL, NULL) ON CONFLICT (customer_id) DO UPDATE SET "
        "risk_score = EXCLUDED.risk_score, avg_amount = EXCLUDED.avg_amount, std_amount = EXCLUDED.std_amount",
    )
    amounts = [
        ("screen-1", 35),
        ("screen-1", 48.5),
        ("screen-1", 2500),
        ("screen-2", 20),
        ("screen-2", 22),
        ("screen-2", 21),
        ("screen-2", 400),
        ("screen-3", 99.99),
    ]
    with inserted(pg, "orchestrator.transactions", ("customer_id", "amount"), amounts) as ids:
        yield ids


def test_fraud_screening_workflow(stack_env: dict[str, str], s3: Minio, open_transactions: list[int]) -> None:
    document = json.loads((FIXTURES / "fraud-screening.json").read_text())
    result = execute(document)
    transactions = result.output_for_node("select_open_transactions")["rows"]
    profiles = result.output_for_node("select_customer_profiles")["rows"]
    assert set(open_transactions) <= {row["id"] for row in transactions}
    rules = document["steps"][2]["input"]["input"]["rules"]
    analysis = result.output_for_node("detect_fraud")
    assert_fraud_analysis(analysis, transactions, profiles, rules)
    by_id = {t["transactionId"]: t for t in analysis["transactions"]}
    assert by_id[open_transactions[2]]["rulesFired"] == ["amountAnomaly"]  # 2500 against a 40 +- 10 profile
    assert (
        by_id[open_transactions[6]]["rules"]["amountAnomaly"]["baseline"] == "batch"
    )  # screen-2: no profile baseline
    risk = result.output_for_node("score_risk")
    thresholds = document["steps"][3]["input"]["input"]["thresholds"]
    levels = expected_levels([t["fraudScore"] for t in analysis["transactions"]], thresholds)
    assert [t["riskLevel"] for t in risk["transactions"]] == levels
    assert risk["alertCount"] > 0
    stored = result.output_for_node("store_alerts")
    assert read_json_object(s3, stored["bucket"], stored["key"]) == risk["alerts"]
    published = result.output_for_node("announce_alerts")
    messages = stream_messages(stack_env["WFP_NATS_URL"], published["stream"], "fraud.alerts")
    (body,) = [message for seq, _, message in messages if seq == published["seq"]]
    assert body == {
        "type": "fraud_screening",
        "alertCount": risk["alertCount"],
        "highestRiskLevel": risk["highestRiskLevel"],
        "counts": risk["counts"],
        "alerts": risk["alerts"],
    }
