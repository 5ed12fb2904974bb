"""Transactions -> the card and terminal histories the window features are computed on (see `windows.py`).

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

The usable rows are then cut into histories, one per card and one per terminal, each in time order: what the
dataflow carries. A combiner, as in map-reduce: one vectorised sort here instead of a Pathway groupby over every
transaction, which measured 77-290 s and 5.8 GB for the handbook's 1.75M transactions on this machine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...row_fields import USABLE, RowFields, epoch_seconds_of, json_value, numbers_of, texts_of

NO_CARD = "no customer_id"
NO_TERMINAL = "no terminal_id/merchant_id"
NO_TIME = "no usable created_at/timestamp"
NO_AMOUNT = "no usable amount"

# History kinds, and their columns (float64 matrices, one row per transaction, in time order).
CARD, TERMINAL = 0, 1
CARD_COLUMNS = ("seconds", "tie", "position", "amount")  # ordered by time, then tie
TERMINAL_COLUMNS = ("seconds", "position", "fraud")  # ordered by time

# (kind, history)
History = tuple[int, np.ndarray]


@dataclass(frozen=True)
class FeatureInput:
    """The usable rows of a table, as columns, and the other rows counted by reason.

    Row i of the columns has position i in the feature matrix (`windows.assemble`); `source_rows[i]` is its
    index in the table it came from.
    """

    card: np.ndarray
    terminal: np.ndarray
    seconds: np.ndarray
    tie: np.ndarray
    amount: np.ndarray
    fraud: np.ndarray
    ids: list
    skipped: dict[str, int]
    source_rows: np.ndarray

    def __len__(self) -> int:
        return len(self.seconds)

    def then(self, later: FeatureInput) -> FeatureInput:
        """These rows followed by `later`'s (whose source_rows keep indexing their own table)."""
        columns = ("card", "terminal", "seconds", "tie", "amount", "fraud", "source_rows")
        joined = {name: np.concatenate([getattr(self, name), getattr(later, name)]) for name in columns}
        skipped = {
            r: self.skipped.get(r, 0) + later.skipped.get(r, 0) for r in {**self.skipped, **later.skipped}
        }
        return FeatureInput(**joined, ids=self.ids + later.ids, skipped=skipped)


def feature_input(frame: pd.DataFrame, exclude_ids: frozenset = frozenset()) -> FeatureInput:
    """The rows of `frame` that have features; rows whose id is in `exclude_ids` are left out (not skipped)."""
    fields = RowFields(frame)
    ids = fields.raw("id", "transaction_id", "TRANSACTION_ID")
    if exclude_ids:
        kept_ids = ~ids.map(json_value).isin(exclude_ids).to_numpy()
        found = feature_input(frame[kept_ids])
        return dataclasses.replace(found, source_rows=np.flatnonzero(kept_ids)[found.source_rows])
    card = texts_of(fields.raw("customer_id", "CUSTOMER_ID"))
    terminal = texts_of(fields.raw("terminal_id", "TERMINAL_ID", "merchant_id"))
    seconds, time_reason = epoch_seconds_of(fields.raw("created_at", "timestamp", "TX_DATETIME"))
    amount, amount_reason = numbers_of(fields.raw("amount", "TX_AMOUNT"))
    label, _ = numbers_of(fields.raw("tx_fraud", "TX_FRAUD", "fraud"))
    reasons = {
        NO_CARD: card.isna().to_numpy(dtype=bool),
        NO_TERMINAL: terminal.isna().to_numpy(dtype=bool),
        NO_TIME: time_reason != USABLE,
        NO_AMOUNT: amount_reason != USABLE,
    }
    usable = ~np.logical_or.reduce(list(reasons.values())) if len(frame) else np.zeros(0, dtype=bool)
    numeric_ids, _ = numbers_of(ids)
    # Ties at one instant are ordered by id when every id is a number (database ids grow with time), else
    # by position.
    tie = (
        numeric_ids if len(frame) and not np.isnan(numeric_ids).any() else np.arange(len(frame), dtype=float)
    )
    kept = np.flatnonzero(usable)
    skipped: dict[str, int] = {}
    counted = usable.copy()
    for reason, without in reasons.items():
        # Each skipped row counts once, under the first reason it has.
        count = int((without & ~counted).sum())
        counted |= without
        if count:
            skipped[reason] = count
    return FeatureInput(
        card=card.to_numpy(dtype=object)[kept],
        terminal=terminal.to_numpy(dtype=object)[kept],
        seconds=seconds[kept],
        tie=np.asarray(tie, dtype=np.float64)[kept],
        amount=amount[kept],
        fraud=(np.nan_to_num(label[kept]) > 0).astype(np.float64),
        ids=[json_value(v) for v in ids.to_numpy()[kept].tolist()],
        skipped=skipped,
        source_rows=kept,
    )


def histories(found: FeatureInput) -> list[History]:
    """One history per card and one per terminal (see CARD_COLUMNS and TERMINAL_COLUMNS)."""
    if len(found) == 0:
        return []
    position = np.arange(len(found), dtype=np.float64)
    cards, _ = pd.factorize(found.card)
    terminals, _ = pd.factorize(found.terminal)
    card_rows = np.column_stack([found.seconds, found.tie, position, found.amount])
    terminal_rows = np.column_stack([found.seconds, position, found.fraud])
    return [
        *((CARD, block) for block in _split(card_rows, cards, (found.tie, found.seconds, cards))),
        *((TERMINAL, block) for block in _split(terminal_rows, terminals, (found.seconds, terminals))),
    ]


def _split(rows: np.ndarray, group: np.ndarray, sort_keys: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """`rows` sorted by `sort_keys` (last = primary, as np.lexsort), cut where `group` changes."""
    order = np.lexsort(sort_keys)
    ordered_groups = group[order]
    cuts = np.flatnonzero(ordered_groups[1:] != ordered_groups[:-1]) + 1
    return np.split(rows[order], cuts)
