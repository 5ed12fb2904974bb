"""Scored transactions (the fraud pipeline's `transactions`) -> the typed rows the risk dataflow works on.

Fields read: `transactionId` (or `transaction_id`, `id`), `customerId` (or `customer_id`), `fraudScore` (or
`fraud_score`), `rulesFired` (or `rules_fired`; a list, or names separated by commas). A row without a
fraudScore in [0, 1] is skipped, with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ...row_fields import MISSING, RowFields, json_value, numbers_of

NO_SCORE = "no fraudScore"
BAD_SCORE = "fraudScore is not a number between 0 and 1"
SKIP_REASONS = (NO_SCORE, BAD_SCORE)

# (position in the input, transaction id, customer id, fraud score, rules fired, skip reason)
Scored = tuple[int, Any, Any, float | None, list[str], str | None]


def scored_transactions(frame: pd.DataFrame) -> list[Scored]:
    fields = RowFields(frame)
    score, why = numbers_of(fields.raw("fraudScore", "fraud_score"))
    in_range = (score >= 0) & (score <= 1)
    skip = np.where(why == MISSING, NO_SCORE, np.where(in_range, None, BAD_SCORE))
    return [
        (position, json_value(transaction), json_value(customer), None if reason else value, rules, reason)
        for position, (transaction, customer, value, rules, reason) in enumerate(
            zip(
                fields.raw("transactionId", "transaction_id", "id").tolist(),
                fields.raw("customerId", "customer_id").tolist(),
                score.tolist(),
                [_rule_names(value) for value in fields.raw("rulesFired", "rules_fired").tolist()],
                skip.tolist(),
                strict=True,
            )
        )
    ]


def _rule_names(value: Any) -> list[str]:
    if isinstance(value, list | tuple | np.ndarray):
        return [str(name) for name in value]
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    return []
