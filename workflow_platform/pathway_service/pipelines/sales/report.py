"""The documents of a sales report, from what the dataflow aggregated. Formatting only: no figure computed here
but averages and roundings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

PIPELINE_ID = "sales-aggregation-pipeline"
METRICS = ("totalRevenue", "topProducts", "regionalBreakdown", "hourlyTrend", "dailyTrend")

# (keys, rows, revenue, units, refunds, refund amount) of one metric.
Totals = tuple[int, int, float, float, int, float]
# (sort order, key, detail, rows, revenue, units, share), sorted by the dataflow.
Entry = tuple[float, str | None, str | None, int, float, float, float | None]


def money(value: float) -> float:
    return round(value, 2) + 0.0  # + 0.0 turns -0.0 into 0.0


def quantity(value: float) -> int | float:
    rounded = round(value, 4)
    return int(rounded) if rounded.is_integer() else rounded


def share(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def metric_document(
    metric: str,
    totals: Totals | None,
    entries: Sequence[Entry],
    skipped: tuple[int, Sequence[tuple[str, int]]],
    top_n: int,
) -> dict[str, Any]:
    """One metric's document; `skipped` is (rows skipped, ((reason, rows), ...))."""
    keys, rows, revenue, units, refunds, refund_amount = totals or (0, 0, 0.0, 0.0, 0, 0.0)
    document: dict[str, Any]
    if metric == "totalRevenue":
        document = {
            "revenue": money(revenue),
            "orderLines": rows,
            "averageLineValue": money(revenue / rows) if rows else None,
            "units": quantity(units),
            "refunds": {"orderLines": refunds, "amount": money(refund_amount)},
        }
    elif metric == "topProducts":
        document = {
            "products": [
                {
                    "rank": rank,
                    "product": key,
                    "category": detail,
                    **_figures(rows_, revenue_, units_),
                    "share": share(share_),
                }
                for rank, (_, key, detail, rows_, revenue_, units_, share_) in enumerate(
                    entries[:top_n], start=1
                )
            ],
            "productCount": keys,
            "revenue": money(revenue),
        }
    elif metric == "regionalBreakdown":
        document = {
            "regions": [
                {"region": key, **_figures(rows_, revenue_, units_), "share": share(share_)}
                for _, key, _, rows_, revenue_, units_, share_ in entries
            ],
            "revenue": money(revenue),
        }
    else:
        label, key_name = ("hours", "hour") if metric == "hourlyTrend" else ("days", "date")
        document = {
            label: [
                {key_name: key, **_figures(rows_, revenue_, units_)}
                for _, key, _, rows_, revenue_, units_, _ in entries
            ]
        }
    document["rowsUsed"] = rows
    document["skipped"] = {"rows": skipped[0], "reasons": dict(sorted(skipped[1]))}
    return document


def _figures(rows: int, revenue: float, units: float) -> dict[str, Any]:
    return {"revenue": money(revenue), "orderLines": rows, "units": quantity(units)}


def report_document(request: dict[str, Any], metrics: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """The answer: the requested metrics, in the order they were asked for."""
    documents = dict(metrics)
    return {
        "pipelineId": PIPELINE_ID,
        "reportType": request["reportType"],
        "salesData": request["salesData"],
        "rowCount": request["salesData"]["rows"],
        "metrics": {metric: documents[metric] for metric in request["includeMetrics"] if metric in documents},
    }
