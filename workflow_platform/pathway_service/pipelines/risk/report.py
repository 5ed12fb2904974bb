"""Risk levels, the actions each calls for, and the documents of a risk assessment. No computation here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PIPELINE_ID = "risk-scoring-pipeline"
# From least to most severe; a transaction's level is the highest whose threshold its score reaches.
LEVELS = ("minimal", "low", "medium", "high", "critical")
ALERT_LEVELS = ("medium", "high", "critical")
ACTIONS: dict[str, list[str]] = {
    "minimal": [],
    "low": ["review"],
    "medium": ["review", "notify"],
    "high": ["review", "notify", "block"],
    "critical": ["review", "notify", "block", "lock"],
}


def assessment_document(
    transaction_id: Any, customer_id: Any, fraud_score: float, level: str, rules_fired: list[str]
) -> dict[str, Any]:
    return {
        "transactionId": transaction_id,
        "customerId": customer_id,
        "fraudScore": fraud_score,
        "riskLevel": level,
        "recommendedActions": ACTIONS[level],
        "rulesFired": rules_fired,
    }


def alert_document(position: int, assessment: dict[str, Any]) -> dict[str, Any]:
    """An alert; its id derives from the transaction (or its position), so a retried run repeats it."""
    subject = assessment["transactionId"] if assessment["transactionId"] is not None else f"row-{position}"
    return {"alertId": f"risk-{subject}", **assessment}


def risk_document(
    request: dict[str, Any],
    assessments: Sequence[dict[str, Any]],
    alerts: Sequence[dict[str, Any]],
    counts: Sequence[tuple[str, int]],
    skipped: Sequence[tuple[str, int]],
) -> dict[str, Any]:
    """The answer; `counts` has every level, `skipped` every reason, each with its number of transactions."""
    per_level = dict(counts)
    present = [level for level in LEVELS if per_level[level]]
    return {
        "pipelineId": PIPELINE_ID,
        "thresholds": request["thresholds"],
        "transactions": list(assessments),
        "alerts": list(alerts),
        "counts": per_level,
        "alertCount": len(alerts),
        "highestRiskLevel": present[-1] if present else None,
        "skipped": {"rows": sum(rows for _, rows in skipped), "reasons": {r: n for r, n in skipped if n}},
        "input": {"transactions": request["fraudAnalysis"]["transactions"]},
    }
