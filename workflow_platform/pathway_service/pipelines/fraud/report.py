"""The documents of a fraud analysis, from what the dataflow computed. Formatting only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

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
) -> dict[str, Any]:
    judged = {rule: outcome for rule, outcome in outcomes.items() if outcome is not None}
    return {
        "transactionId": transaction_id,
        "customerId": customer,
        "amount": amount,
        "createdAt": None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(),
        "customerRiskScore": risk_score,
        "fraudScore": round(fraud_score, 4),
        "rulesFired": [rule for rule in RULE_NAMES if judged.get(rule, {}).get("status") == "fired"],
        "rules": judged,
    }


def analysis_document(
    request: dict[str, Any],
    transactions: Sequence[dict[str, Any]],
    with_profile: int,
    fired: Sequence[int],
    not_evaluable: Sequence[int],
    average_score: float | None,
    max_score: float | None,
) -> dict[str, Any]:
    """The answer; `fired` and `not_evaluable` count transactions per rule, in RULE_NAMES order."""
    configured = [rule for rule in RULE_NAMES if request["rules"][rule] is not None]
    return {
        "pipelineId": PIPELINE_ID,
        "transactions": list(transactions),
        "summary": {
            "transactions": len(transactions),
            "withProfile": with_profile,
            "rulesFired": {rule: fired[RULE_NAMES.index(rule)] for rule in configured},
            "notEvaluable": {rule: not_evaluable[RULE_NAMES.index(rule)] for rule in configured},
            "averageScore": None if average_score is None else round(average_score, 4),
            "maxScore": None if max_score is None else round(max_score, 4),
        },
        "rules": {rule: request["rules"][rule] for rule in configured},
        "input": {"transactions": request["transactions"], "customerProfiles": request["customerProfiles"]},
    }
