"""The stream's memory of recent transactions, and the window features of new ones computed against it.

Two steps, so that the order in which rows reach them does not matter: `remember` adds transactions (a
transaction delivered again is remembered once), `features` computes transactions' windows from what is
remembered (they included: a window ends at the transaction itself). The dataflow remembers each tick's rows
before it computes any of their features, so every transaction is featured on all those before it in time.

The features are the training's own (`workflow_platform.fraud.features`): each card's and each terminal's
transactions are kept in time order with running sums (`Timelines`), of the amounts and of the labels, and
`customer_spending_in` / `terminal_risk_in` find each window in them by binary search, so a transaction costs
the same however much history the windows hold. The fraud-detection pipeline
(`pathway_service/pipelines/fraud/windows.py`) and training compute the same windows by sorting; the formulas
are in one place.

Labels come late (feedback.py): `label` sets a remembered transaction's, so that the terminal-risk windows of
transactions featured afterwards count it (7 days later, the handbook's delay: `terminal_risk`). A label for a
transaction not remembered is kept until the transaction comes, or until the stream has moved on 37 days (as
far as a window reaches) past the first clean-up after the label: by then the transaction expired before its
label came, or is not coming.

Only what a window can reach is kept: transactions less than 37 days (the terminal's 30-day window, 7 days
back) older than the newest seen, or than the oldest not featured yet. The transactions themselves (their
ids, for the labels and to remember each once) live in columns with spare capacity, so a tick appends without
copying the history; expired rows are dropped when the columns fill up, and from a timeline when it fills up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workflow_platform.fraud.features import (
    DELAY_DAYS,
    FEATURES,
    WINDOWS_DAYS,
    calendar_flags,
    customer_spending_in,
    in_cents,
    terminal_risk_in,
)
from workflow_platform.fraud.timelines import Timelines

DAY_NS = 86_400 * 10**9
KEEP_NS = (DELAY_DAYS + max(WINDOWS_DAYS)) * DAY_NS
# What is kept of each transaction (a Batch's fields) besides its timelines: what featuring and labelling it take.
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
    """Transactions as columns, in any order: cards and terminals as codes."""

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
        try:  # the usual case, all known: one pass in C
            return np.fromiter(map(codes.__getitem__, ids), dtype=np.int64, count=len(ids))
        except KeyError:
            return np.fromiter((codes.setdefault(i, len(codes)) for i in ids), dtype=np.int64, count=len(ids))


class RecentHistory:
    """The transactions any window of a new one can reach, as columns with room to grow."""

    def __init__(self, capacity: int = 1 << 16, featured_from: int | None = None) -> None:
        """`capacity`: the rows (and each timeline's slots) to start with; `featured_from`: transactions before
        this instant (a replay's history) are remembered only, never featured: no window has to wait for them."""
        self._columns = {name: np.empty(capacity, dtype) for name, dtype in _COLUMNS.items()}
        self._size = 0
        self._newest = np.iinfo(np.int64).min
        self._rows: dict[int, int] = {}  # remembered transaction id -> its row
        # id -> (label, the newest instant at the first clean-up since it came) of transactions not remembered
        self._labels: dict[int, tuple[float, int | None]] = {}
        self._unfeatured: dict[int, int] = {}  # id -> instant of those remembered, not featured yet
        self._featured_from = np.iinfo(np.int64).min if featured_from is None else featured_from
        self._spending = Timelines(slab=capacity)  # per card: amounts in cents
        self._risk = Timelines(slab=capacity)  # per terminal: labels

    def __len__(self) -> int:
        return self._size

    def remember(self, batch: Batch) -> None:
        """Add the batch's transactions but those remembered already (JetStream may deliver one again), with
        the labels that came before them."""
        known, seen = self._rows, set()
        fresh = np.zeros(len(batch), dtype=bool)
        for position, transaction_id in enumerate(batch.tie.tolist()):
            fresh[position] = transaction_id not in known and transaction_id not in seen
            seen.add(transaction_id)
        self._unfeatured.update(
            (transaction_id, instant)
            for transaction_id, instant in zip(batch.tie.tolist(), batch.instant.tolist(), strict=True)
            if instant >= self._featured_from
        )
        fresh_rows = _rows(batch, fresh)
        for position, transaction_id in enumerate(fresh_rows.tie.tolist()):
            if (label := self._labels.pop(transaction_id, None)) is not None:
                fresh_rows.fraud[position] = label[0]
        self._append(fresh_rows)

    def label(self, transaction_ids: list[int], frauds: list[float]) -> None:
        """Set the transactions' labels (1 = a fraud): now if remembered, else when they come."""
        columns = self._columns
        for transaction_id, value in zip(transaction_ids, frauds, strict=True):
            if (row := self._rows.get(transaction_id)) is not None:
                columns["fraud"][row] = value
                self._risk.set_value(
                    int(columns["terminal"][row]), int(columns["instant"][row]), transaction_id, value
                )
            else:
                self._labels[transaction_id] = (value, None)

    def features(self, transaction_ids: list[int]) -> np.ndarray:
        """The FEATURES matrix of remembered transactions (a row each), against the others remembered; each as
        it was remembered, should it have been sent again otherwise."""
        if not transaction_ids:
            return np.empty((0, len(FEATURES)))
        for transaction_id in transaction_ids:
            self._unfeatured.pop(transaction_id, None)
        rows = self._rows_of(transaction_ids)
        card, terminal, instant, tie, amount = (
            self._columns[name][rows] for name in ("card", "terminal", "instant", "tie", "amount")
        )
        features = {
            "TX_AMOUNT": amount,
            **calendar_flags(instant, DAY_NS),  # the wall clock of UTC
            **customer_spending_in(self._spending, card, instant, tie, DAY_NS),
            **terminal_risk_in(self._risk, terminal, instant, DAY_NS),
        }
        return np.column_stack([np.asarray(features[name], dtype=np.float64) for name in FEATURES])

    def labels(self, transaction_ids: list[int]) -> np.ndarray:
        """The remembered transactions' labels (1.0 = a fraud)."""
        return self._columns["fraud"][self._rows_of(transaction_ids)]

    def _rows_of(self, transaction_ids: list[int]) -> np.ndarray:
        return np.fromiter(
            map(self._rows.__getitem__, transaction_ids), dtype=np.int64, count=len(transaction_ids)
        )

    def _append(self, batch: Batch) -> None:
        self._newest = max(self._newest, int(batch.instant.max(initial=self._newest)))
        end = self._size + len(batch)
        if end > len(self._columns["instant"]):
            self._compact(len(batch))
            end = self._size + len(batch)
        for name in _COLUMNS:
            self._columns[name][self._size : end] = getattr(batch, name)
        self._rows.update(zip(batch.tie.tolist(), range(self._size, end), strict=True))
        self._size = end
        self._spending.add(batch.card, batch.instant, batch.tie, in_cents(batch.amount), self._expired)
        self._risk.add(batch.terminal, batch.instant, batch.tie, batch.fraud, self._expired)

    def _expired(self) -> int:
        """The instant at and before which no window of a transaction to come or not featured yet reaches."""
        return min(self._newest, min(self._unfeatured.values(), default=self._newest)) - KEEP_NS

    def _compact(self, incoming: int) -> None:
        """Drop what no window reaches any more (that of the oldest transaction not featured yet included);
        grow so that the live rows fill at most half."""
        expired = self._expired()
        live = np.flatnonzero(self._columns["instant"][: self._size] > expired)
        capacity = max(len(self._columns["instant"]), 2 * (len(live) + incoming))
        for name, dtype in _COLUMNS.items():
            column = np.empty(capacity, dtype)
            column[: len(live)] = self._columns[name][live]
            self._columns[name] = column
        self._size = len(live)
        self._rows = {
            transaction_id: row
            for row, transaction_id in enumerate(self._columns["tie"][: len(live)].tolist())
        }
        self._labels = {
            transaction_id: (label, self._newest if since is None else since)
            for transaction_id, (label, since) in self._labels.items()
            if since is None or since > expired
        }


def _rows(batch: Batch, which: np.ndarray) -> Batch:
    return Batch(**{name: getattr(batch, name)[which] for name in _COLUMNS})
