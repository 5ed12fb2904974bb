"""risk-scoring-pipeline as a Pathway dataflow: a level and actions per scored transaction, alerts, counts.

scored transactions ─► level (threshold expressions) ─► per request (one groupby): assessments in input
order, alerts highest score first, transactions per level, rows skipped per reason
"""

import pathway as pw

from ...staging import StagedRequest
from ..request_rows import request_rows
from .report import ALERT_LEVELS, LEVELS, alert_document, assessment_document, risk_document
from .rows import SKIP_REASONS, scored_transactions


# No `from __future__ import annotations` here: Pathway reads the UDFs' annotations as types.
# Not deterministic: Pathway keeps the rows to retract them later instead of computing them again.
@pw.udf
def load_scored(
    request: pw.PyObjectWrapper[StagedRequest],
) -> list[tuple[int, pw.Json, pw.Json, float | None, pw.Json, str | None]]:
    return [
        (position, pw.Json(transaction), pw.Json(customer), score, pw.Json(rules), skip)
        for position, transaction, customer, score, rules, skip in scored_transactions(
            request.value.tables["fraudAnalysis.transactions"]
        )
    ]


@pw.udf(deterministic=True)
def assessment_of(
    transaction: pw.Json, customer: pw.Json, score: float | None, level: str | None, rules: pw.Json
) -> pw.Json | None:
    if score is None or level is None:  # a row skipped for want of a score
        return None
    return pw.Json(assessment_document(transaction.value, customer.value, score, level, rules.value))


@pw.udf(deterministic=True)
def alert_of(position: int, assessment: pw.Json | None) -> pw.Json | None:
    return None if assessment is None else pw.Json(alert_document(position, assessment.value))


@pw.udf(deterministic=True)
def risk_of(
    request: pw.Json,
    assessments: tuple | None,
    alerts: tuple | None,
    counts: tuple | None,
    skipped: tuple | None,
) -> pw.Json:
    document = risk_document(
        request.value,
        [assessment.value for _, assessment in assessments or ()],
        [alert.value for _, _, alert in alerts or ()],
        list(zip(LEVELS, counts or (0,) * len(LEVELS), strict=True)),
        list(zip(SKIP_REASONS, skipped or (0,) * len(SKIP_REASONS), strict=True)),
    )
    return pw.Json(document)


def build(requests: pw.Table) -> pw.Table:
    fields = ("position", "transaction", "customer", "score", "rules", "skip")
    scored = (
        request_rows(requests, load_scored, fields)
        .join(requests, pw.left.query_id == pw.right.id, id=pw.left.id)
        .select(*pw.left, thresholds=pw.right.input["thresholds"])
    )
    score = pw.coalesce(pw.this.score, -1.0)  # only the rows skipped have no score
    level: pw.ColumnExpression | str = LEVELS[0]
    for name in LEVELS[1:]:
        level = pw.if_else(score >= pw.this.thresholds[name].as_float(unwrap=True), name, level)
    leveled = scored.with_columns(level=pw.if_else(pw.this.skip.is_none(), level, None))
    assessed = leveled.with_columns(
        assessment=assessment_of(
            pw.this.transaction, pw.this.customer, pw.this.score, pw.this.level, pw.this.rules
        )
    ).with_columns(alert=alert_of(pw.this.position, pw.this.assessment))
    alerting = _one_of(pw.this.level, ALERT_LEVELS)
    per_request = assessed.groupby(pw.this.query_id).reduce(
        pw.this.query_id,
        assessments=pw.reducers.sorted_tuple(
            pw.if_else(pw.this.skip.is_none(), pw.make_tuple(pw.this.position, pw.this.assessment), None),
            skip_nones=True,
        ),
        # Highest score first, then input order.
        alerts=pw.reducers.sorted_tuple(
            pw.if_else(alerting, pw.make_tuple(-score, pw.this.position, pw.this.alert), None),
            skip_nones=True,
        ),
        counts=pw.make_tuple(*(pw.reducers.sum(_count_if(pw.this.level, name)) for name in LEVELS)),
        skipped=pw.make_tuple(*(pw.reducers.sum(_count_if(pw.this.skip, reason)) for reason in SKIP_REASONS)),
    )
    # Every request is answered, with or without transactions; the answer keeps the request's id, which is
    # how the service matches it to the waiting HTTP call.
    return requests.join_left(per_request, pw.left.id == pw.right.query_id, id=pw.left.id).select(
        result=risk_of(
            pw.left.input, pw.right.assessments, pw.right.alerts, pw.right.counts, pw.right.skipped
        )
    )


def _count_if(column: pw.ColumnExpression, value: str) -> pw.ColumnExpression:
    return pw.if_else(pw.coalesce(column, "") == value, 1, 0)


def _one_of(column: pw.ColumnExpression, values: tuple[str, ...]) -> pw.ColumnExpression:
    condition = pw.coalesce(column, "") == values[0]
    for value in values[1:]:
        condition = condition | (pw.coalesce(column, "") == value)
    return condition
