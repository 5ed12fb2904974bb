"""The documents of a fraud analysis, from what the dataflow computed. Formatting only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from workflow_platform.fraud.features import FEATURES

from .rules import RULE_NAMES, Outcome

PIPELINE_ID = "fraud-detection-pipeline"


def transaction_document(
    transaction_id: Any,
    customer: str | None,
    amount: float | None,
    seconds: float | None,
    risk_score: float | None,
    fraud_score: float,
    outcomes: Mapping[str, Outcome | None],
    model_score: float | None = None,
    features: Sequence[float] | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """riskScore is the model's score where there is one, else the rules' fraudScore."""
    judged = {rule: outcome for rule, outcome in outcomes.items() if outcome is not None}
    fired = [rule for rule in RULE_NAMES if judged.get(rule, {}).get("status") == "fired"]
    risk = model_score if model_score is not None else fraud_score
    return {
        "transactionId": transaction_id,
        "customerId": customer,
        "amount": amount,
        "createdAt": None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(),
        "customerRiskScore": risk_score,
        "riskScore": round(risk, 4),
        "scoredBy": "model" if model_score is not None else "rules",
        "fraudFlag": risk >= threshold,
        "modelScore": None if model_score is None else round(model_score, 4),
        "fraudScore": round(fraud_score, 4),
        "rulesFired": fired,
        "explanations": [{"rule": rule, **judged[rule]} for rule in fired],
        "rules": judged,
        "features": None if features is None else dict(zip(FEATURES, features, strict=True)),
    }


def analysis_document(
    request: dict[str, Any],
    model: dict[str, Any] | None,
    transactions: Sequence[dict[str, Any]],
    with_profile: int,
    fired: Sequence[int],
    not_evaluable: Sequence[int],
    average_score: float | None,
    max_score: float | None,
) -> dict[str, Any]:
    """The answer; `fired` and `not_evaluable` count transactions per rule, in RULE_NAMES order."""
    configured = [rule for rule in RULE_NAMES if request["rules"][rule] is not None]
    alerts = [_alert(document, model) for document in transactions if document["fraudFlag"]]
    return {
        "pipelineId": PIPELINE_ID,
        "model": model,
        "alertThreshold": request["alertThreshold"],
        "alerts": alerts,
        "scores": [
            {"id": d["transactionId"], "risk_score": d["riskScore"], "fraud_flag": d["fraudFlag"]}
            for d in transactions
        ],
        "transactions": list(transactions),
        "summary": {
            "transactions": len(transactions),
            "scoredByModel": sum(d["scoredBy"] == "model" for d in transactions),
            "alerts": len(alerts),
            "withProfile": with_profile,
            "rulesFired": {rule: fired[RULE_NAMES.index(rule)] for rule in configured},
            "notEvaluable": {rule: not_evaluable[RULE_NAMES.index(rule)] for rule in configured},
            "averageScore": None if average_score is None else round(average_score, 4),
            "maxScore": None if max_score is None else round(max_score, 4),
        },
        "rules": {rule: request["rules"][rule] for rule in configured},
        "input": {name: request[name] for name in ("transactions", "customerProfiles", "history")},
    }


def _alert(document: dict[str, Any], model: dict[str, Any] | None) -> dict[str, Any]:
    """What a fraud analyst needs to act on a flagged transaction."""
    keys = ("transactionId", "customerId", "amount", "createdAt", "riskScore", "scoredBy", "explanations")
    return {**{key: document[key] for key in keys}, "modelVersion": model["version"] if model else None}
