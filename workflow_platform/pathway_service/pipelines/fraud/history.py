"""Transactions -> the rows the window features are computed on (see `windows.py`).

Fields read (the first name that has a value; the handbook's column names are understood too):

| field | names |
|---|---|
| id | `id`, `transaction_id`, `TRANSACTION_ID` (orders transactions of a card at the same instant, when numeric) |
| card | `customer_id`, `CUSTOMER_ID` |
| terminal | `terminal_id`, `TERMINAL_ID`, `merchant_id` |
| time | `created_at`, `timestamp`, `TX_DATETIME` (ISO 8601, a timestamp, or epoch s/ms; naive = UTC) |
| amount | `amount`, `TX_AMOUNT` |
| label | `tx_fraud`, `TX_FRAUD`, `fraud` (1 = a known fraud; missing = not known to be one) |

A row without a card, a terminal, a time or an amount has no features: it is counted as skipped, by reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...row_fields import USABLE, RowFields, epoch_seconds_of, json_value, numbers_of, texts_of

# (position, card, terminal, epoch seconds, tie-breaker, amount, label)
FeatureRow = tuple[int, str, str, float, int, float, float]

NO_CARD = "no customer_id"
NO_TERMINAL = "no terminal_id/merchant_id"
NO_TIME = "no usable created_at/timestamp"
NO_AMOUNT = "no usable amount"


@dataclass(frozen=True)
class FeatureInput:
    """The usable rows of a table (positions count from `first_position`) and the others, by reason."""

    rows: list[FeatureRow]
    ids: list
    skipped: dict[str, int]
    source_rows: np.ndarray  # for each row, its index in the table


def feature_input(
    frame: pd.DataFrame, first_position: int = 0, exclude_ids: frozenset = frozenset()
) -> FeatureInput:
    """The rows of `frame` that have features; rows whose id is in `exclude_ids` are left out (not skipped)."""
    fields = RowFields(frame)
    ids = fields.raw("id", "transaction_id", "TRANSACTION_ID")
    if exclude_ids:
        kept_ids = ~ids.map(json_value).isin(exclude_ids).to_numpy()
        return _with_source_rows(feature_input(frame[kept_ids], first_position), np.flatnonzero(kept_ids))
    card = texts_of(fields.raw("customer_id", "CUSTOMER_ID"))
    terminal = texts_of(fields.raw("terminal_id", "TERMINAL_ID", "merchant_id"))
    seconds, time_reason = epoch_seconds_of(fields.raw("created_at", "timestamp", "TX_DATETIME"))
    amount, amount_reason = numbers_of(fields.raw("amount", "TX_AMOUNT"))
    label, _ = numbers_of(fields.raw("tx_fraud", "TX_FRAUD", "fraud"))
    reasons = {
        NO_CARD: card.isna().to_numpy(),
        NO_TERMINAL: terminal.isna().to_numpy(),
        NO_TIME: time_reason != USABLE,
        NO_AMOUNT: amount_reason != USABLE,
    }
    usable = ~np.logical_or.reduce(list(reasons.values())) if len(frame) else np.zeros(0, dtype=bool)
    numeric_ids, _ = numbers_of(ids)
    # Ties at one instant are ordered by id when every id is a number (database ids grow with time), else
    # by position.
    tie = numeric_ids if len(frame) and not np.isnan(numeric_ids).any() else np.arange(len(frame))
    kept = np.flatnonzero(usable)
    rows = list(
        zip(
            range(first_position, first_position + len(kept)),
            card.to_numpy()[kept].tolist(),
            terminal.to_numpy()[kept].tolist(),
            seconds[kept].tolist(),
            np.asarray(tie, dtype=np.int64)[kept].tolist(),
            amount[kept].tolist(),
            (np.nan_to_num(label[kept]) > 0).astype(np.float64).tolist(),
            strict=True,
        )
    )
    skipped: dict[str, int] = {}
    counted = usable.copy()
    for reason, without in reasons.items():
        # Each skipped row counts once, under the first reason it has.
        count = int((without & ~counted).sum())
        counted |= without
        if count:
            skipped[reason] = count
    return FeatureInput(rows, [json_value(v) for v in ids.to_numpy()[kept].tolist()], skipped, kept)


def _with_source_rows(found: FeatureInput, rows_of_subset: np.ndarray) -> FeatureInput:
    return FeatureInput(found.rows, found.ids, found.skipped, rows_of_subset[found.source_rows])
