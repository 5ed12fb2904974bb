"""The stream's memory of recent transactions, and the window features of new ones computed against it.

The features are the training's own (`workflow_platform.fraud.features`), run once per tick on all the tick's
cards and terminals together: the history rows of those cards (terminals) followed by the new rows go through
`customer_spending` (`terminal_risk`), which group by card (terminal) themselves, and the new rows' results are
kept. The fraud-detection pipeline (`pathway_service/pipelines/fraud/windows.py`) calls the same functions on
one card's or terminal's history at a time; the formulas are in one place.

Only what a window can reach is kept: transactions less than 37 days (the terminal's 30-day window, 7 days
back) older than the newest seen. Rows live in columns with spare capacity, so a tick appends without
copying the history; expired rows are dropped when the columns fill up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workflow_platform.fraud.features import (
    DELAY_DAYS,
    FEATURES,
    WINDOWS_DAYS,
    calendar_flags,
    customer_spending,
    terminal_risk,
)

DAY_NS = 86_400 * 10**9
KEEP_NS = (DELAY_DAYS + max(WINDOWS_DAYS)) * DAY_NS
_COLUMNS = {
    "card": np.int64,
    "terminal": np.int64,
    "instant": np.int64,
    "tie": np.int64,
    "amount": np.float64,
    "fraud": np.float64,
}


@dataclass(frozen=True)
class Batch:
    """New transactions as columns, in time order (ties by transaction id): cards and terminals as codes."""

    card: np.ndarray
    terminal: np.ndarray
    instant: np.ndarray  # UTC, nanoseconds since the epoch (exact, as `transform_features` compares them)
    tie: np.ndarray  # the transaction id
    amount: np.ndarray
    fraud: np.ndarray  # the label the message carries, 1 = a known fraud

    def __len__(self) -> int:
        return len(self.instant)


class Codes:
    """Card or terminal ids -> small integers, the same for an id all the stream long."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._codes)

    def of(self, ids: list[str]) -> np.ndarray:
        codes = self._codes
        return np.fromiter((codes.setdefault(i, len(codes)) for i in ids), dtype=np.int64, count=len(ids))


class RecentHistory:
    """The transactions any window of a new one can reach, as columns with room to grow."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._columns = {name: np.empty(capacity, dtype) for name, dtype in _COLUMNS.items()}
        self._size = 0
        self._newest = np.iinfo(np.int64).min

    def __len__(self) -> int:
        return self._size

    def features(self, batch: Batch, cards: int, terminals: int) -> np.ndarray:
        """The batch's FEATURES matrix (one row per transaction), then the batch joins the history.

        `cards`, `terminals`: how many codes exist (the batch's included)."""
        features = {
            "TX_AMOUNT": batch.amount,
            **calendar_flags(batch.instant, DAY_NS),  # the wall clock of UTC
            **self._spending(batch, cards),
            **self._risk(batch, terminals),
        }
        self._append(batch)
        return np.column_stack([np.asarray(features[name], dtype=np.float64) for name in FEATURES])

    def _spending(self, batch: Batch, cards: int) -> dict[str, np.ndarray]:
        rows = self._rows_of("card", batch.card, cards)
        card, instant, tie, amount = (
            self._with(rows, name, batch) for name in ("card", "instant", "tie", "amount")
        )
        spending = customer_spending(card, instant, tie, amount, DAY_NS)
        return {name: values[len(rows) :] for name, values in spending.items()}

    def _risk(self, batch: Batch, terminals: int) -> dict[str, np.ndarray]:
        rows = self._rows_of("terminal", batch.terminal, terminals)
        terminal, instant, fraud = (
            self._with(rows, name, batch) for name in ("terminal", "instant", "fraud")
        )
        risk = terminal_risk(terminal, instant, fraud, DAY_NS)
        return {name: values[len(rows) :] for name, values in risk.items()}

    def _rows_of(self, column: str, wanted: np.ndarray, codes: int) -> np.ndarray:
        """Indices of the history rows whose card (terminal) is in `wanted`: a lookup table, not a search."""
        is_wanted = np.zeros(codes, dtype=bool)
        is_wanted[wanted] = True
        return np.flatnonzero(is_wanted[self._columns[column][: self._size]])

    def _with(self, rows: np.ndarray, name: str, batch: Batch) -> np.ndarray:
        return np.concatenate([self._columns[name][rows], getattr(batch, name)])

    def _append(self, batch: Batch) -> None:
        self._newest = max(self._newest, int(batch.instant.max(initial=self._newest)))
        end = self._size + len(batch)
        if end > len(self._columns["instant"]):
            self._compact(len(batch))
            end = self._size + len(batch)
        for name in _COLUMNS:
            self._columns[name][self._size : end] = getattr(batch, name)
        self._size = end

    def _compact(self, incoming: int) -> None:
        """Drop what no window reaches any more; grow so that the live rows fill at most half."""
        live = np.flatnonzero(self._columns["instant"][: self._size] > self._newest - KEEP_NS)
        capacity = max(len(self._columns["instant"]), 2 * (len(live) + incoming))
        for name, dtype in _COLUMNS.items():
            column = np.empty(capacity, dtype)
            column[: len(live)] = self._columns[name][live]
            self._columns[name] = column
        self._size = len(live)
