"""sales-aggregation-pipeline as a Pathway dataflow: partial sums in, one report per request out.

    requests ─► partial sums per batch (rows.partials, flattened)
             ─► merged per (metric, key) for the rows counted, per (metric, reason) for the rows skipped
             ─► per metric: totals ─► shares (join) ─► ranking (sorted tuple)
    requested metrics ─► one document each (join) ─► one report per request

Each operator costs a little CPU on every tick of the dataflow, busy or idle, so the graph stays small.
"""

import pathway as pw

from ...staging import StagedRequest
from ..request_rows import request_rows
from .report import metric_document, report_document
from .rows import Partial, partials

SUMS = ("rows", "revenue", "units", "refunds", "refund_amount")


# No `from __future__ import annotations` here: Pathway reads the UDFs' annotations as types.
# Not deterministic: Pathway keeps the rows to retract them later instead of computing them again.
@pw.udf
def load_partials(request: pw.PyObjectWrapper[StagedRequest]) -> list[Partial]:
    staged = request.value
    return partials(staged.tables["salesData"], staged.input["includeMetrics"])


@pw.udf(deterministic=True)
def document_of(
    metric: str, top_n: int, totals: tuple | None, rows: tuple | None, skipped_rows: int | None
) -> pw.Json:
    # `rows` holds the entries (skip None) then the reasons rows were skipped, each in order.
    entries = [row[1:] for row in rows or () if row[0] is None]
    reasons = [(row[0], row[4]) for row in rows or () if row[0] is not None]
    return pw.Json(metric_document(metric, totals, entries, (skipped_rows or 0, reasons), top_n))


@pw.udf(deterministic=True)
def report_of(request: pw.Json, metrics: tuple | None) -> pw.Json:
    return pw.Json(report_document(request.value, ((name, doc.value) for name, doc in metrics or ())))


def build(requests: pw.Table) -> pw.Table:
    per_metric = _per_metric(_merged(_partials(requests)))
    per_request = (
        _documents(_wanted(requests), per_metric)
        .groupby(pw.this.query_id)
        .reduce(pw.this.query_id, metrics=pw.reducers.tuple(pw.make_tuple(pw.this.metric, pw.this.document)))
    )
    # A left join keeps requests that asked for no metric; the answer keeps the request's id, which is how the
    # service matches it to the waiting HTTP call.
    return requests.join_left(per_request, pw.left.id == pw.right.query_id, id=pw.left.id).select(
        result=report_of(pw.left.input, pw.right.metrics)
    )


def _partials(requests: pw.Table) -> pw.Table:
    """The partial sums of every request's rows, one row each (query_id, metric, key, detail, skip, SUMS)."""
    return request_rows(requests, load_partials, ("metric", "key", "detail", "skip", *SUMS))


def _merged(parts: pw.Table) -> pw.Table:
    """Batches' partial sums merged: per (metric, key) for the rows counted, per (metric, reason) for the others."""
    return parts.groupby(pw.this.query_id, pw.this.metric, pw.this.key, pw.this.skip).reduce(
        pw.this.query_id,
        pw.this.metric,
        pw.this.key,
        pw.this.skip,
        # A product whose rows name several categories shows the alphabetically last one.
        detail=pw.reducers.max(pw.this.detail),
        **{name: pw.reducers.sum(pw.this[name]) for name in SUMS},
    )


def _per_metric(merged: pw.Table) -> pw.Table:
    """Per (request, metric): totals, rows skipped, and its entries with their shares, in report order."""
    ranked = _ranked(merged, _totals(merged))
    return ranked.groupby(pw.this.query_id, pw.this.metric).reduce(
        pw.this.query_id,
        pw.this.metric,
        totals=pw.reducers.max(pw.this.totals),
        skipped_rows=pw.reducers.sum(pw.if_else(pw.this.skip.is_none(), 0, pw.this.rows)),
        # Skipped rows (reason first) after the counted ones (None first), each group in its order.
        rows=pw.reducers.sorted_tuple(
            pw.make_tuple(
                pw.this.skip,
                pw.this.order,
                pw.this.key,
                pw.this.detail,
                pw.this.rows,
                pw.this.revenue,
                pw.this.units,
                pw.this.share,
            )
        ),
    )


def _totals(merged: pw.Table) -> pw.Table:
    return (
        merged.filter(pw.this.skip.is_none())
        .groupby(pw.this.query_id, pw.this.metric)
        .reduce(
            pw.this.query_id,
            pw.this.metric,
            totals=pw.make_tuple(pw.reducers.count(), *(pw.reducers.sum(pw.this[name]) for name in SUMS)),
            revenue=pw.reducers.sum(pw.this.revenue),
        )
    )


def _ranked(merged: pw.Table, totals: pw.Table) -> pw.Table:
    """Every merged row with its metric's totals, its share of the revenue and its sort order."""
    return merged.join_left(
        totals, pw.left.query_id == pw.right.query_id, pw.left.metric == pw.right.metric
    ).select(
        *pw.left,
        share=pw.if_else(
            pw.left.skip.is_none() & (pw.coalesce(pw.right.revenue, 0.0) != 0.0),
            pw.left.revenue / pw.coalesce(pw.right.revenue, 1.0),
            None,
        ),
        # Trends in time order; breakdowns by revenue (to the cent, so float noise never decides), then by key.
        order=pw.if_else(
            (pw.left.metric == "hourlyTrend") | (pw.left.metric == "dailyTrend"),
            0.0,
            -pw.left.revenue.num.round(2),
        ),
        totals=pw.right.totals,
    )


def _wanted(requests: pw.Table) -> pw.Table:
    """The metrics each request asks for, one row each (query_id, metric, top_n)."""
    return (
        requests.select(
            metric=pw.this.input["includeMetrics"], top_n=pw.this.input["topN"].as_int(unwrap=True)
        )
        .flatten(pw.this.metric, origin_id="query_id")
        .select(pw.this.query_id, pw.this.top_n, metric=pw.this.metric.as_str(unwrap=True))
    )


def _documents(wanted: pw.Table, per_metric: pw.Table) -> pw.Table:
    """One document per metric asked for; a metric without rows gets the document of nothing."""
    return wanted.join_left(
        per_metric, pw.left.query_id == pw.right.query_id, pw.left.metric == pw.right.metric
    ).select(
        pw.left.query_id,
        pw.left.metric,
        document=document_of(
            pw.left.metric, pw.left.top_n, pw.right.totals, pw.right.rows, pw.right.skipped_rows
        ),
    )
