"""Transactions -> their window features and the model's fraud probability, a batch at a time, vectorised.

The dataflow calls `remember` with the rows of a tick (transactions, and the delayed labels of feedback.py),
then `score` with the same transactions (both as batched UDFs, which Pathway calls with up to about a thousand
rows at a time, in no particular order): each transaction is scored on the transactions remembered up to then,
those before it in time, however the tick was cut. A
transaction arriving after later ones is scored on what was there; earlier scores are not revised, nor by a
label: a label counts in the windows of the transactions scored after it.

A transaction the platform cannot take (`rejection`: a time that is not one, an amount PostgreSQL's
numeric(12, 2) cannot hold, a NUL in an id, a control character in its source) is neither remembered nor
scored: `remember` gives it the instant REJECTED, and the dataflow publishes it with its reason instead. One
such message must not stop the stream (it would fail again at every restart).
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd

from workflow_platform.fraud.features import FEATURES

from .history import Batch, Codes, RecentHistory
from .latest_model import LatestModel

# (risk score, whether it is an alert, its 15 features in FEATURES order if so (else none), model version, the
# transaction's label then)
Scored = tuple[float, bool, tuple[float, ...], str, int]
# The instant `remember` gives a rejected transaction (pandas' NaT: never a time).
REJECTED = int(np.iinfo(np.int64).min)
MAX_AMOUNT = 1e10  # orchestrator.transactions.amount is numeric(12, 2)


class Scorer:
    def __init__(
        self, model: LatestModel, alert_threshold: float, emit_from: dt.datetime | None = None
    ) -> None:
        """`alert_threshold`: the score from which a transaction is an alert, whose body carries its features
        (the others' are not passed on: 15 values a row less through the dataflow); `emit_from`: a replay's
        instant, before which transactions are remembered, not scored. The model's OpenMP code runs on one
        thread (pipeline.py sets OMP_NUM_THREADS)."""
        self._model, self._alert_threshold = model, alert_threshold
        self._history = RecentHistory(
            featured_from=None if emit_from is None else pd.Timestamp(emit_from).value
        )
        self._cards = Codes()
        self._terminals = Codes()

    def remember(
        self,
        is_label: list[bool],
        transaction_id: list[int],
        created_at: list[str],
        customer_id: list[str],
        terminal_id: list[str],
        amount: list[float],
        tx_fraud: list[int],
        source: list[str],
    ) -> list[int]:
        """Apply the labels and remember the transactions (rows of either, `is_label` tells which); returns
        the transactions' instants (UTC epoch nanoseconds), which `score` takes, REJECTED for a transaction
        the platform cannot take, and 0 for the labels."""
        columns = (transaction_id, created_at, customer_id, terminal_id, amount, tx_fraud, source)
        if not any(is_label):  # the usual tick: transactions only
            return self._remember(*columns)
        labels = [row for row, label in enumerate(is_label) if label]
        self._history.label(_pick(transaction_id, labels), [float(f > 0) for f in _pick(tx_fraud, labels)])
        rows = [row for row, label in enumerate(is_label) if not label]
        instants = [0] * len(is_label)
        for row, instant in zip(rows, self._remember(*(_pick(c, rows) for c in columns)), strict=True):
            instants[row] = instant
        return instants

    def _remember(
        self,
        transaction_id: list[int],
        created_at: list[str],
        customer_id: list[str],
        terminal_id: list[str],
        amount: list[float],
        tx_fraud: list[int],
        source: list[str],
    ) -> list[int]:
        instant = _instants_if_all_fine(created_at, customer_id, terminal_id, amount, source)
        if instant is not None:
            self._history.remember(
                self._batch(transaction_id, instant, customer_id, terminal_id, amount, tx_fraud)
            )
            return instant.tolist()
        # Some row is not right: each one looked at alone, the fine ones remembered.
        fine = [
            row
            for row, reason in enumerate(map(rejection, created_at, customer_id, terminal_id, amount, source))
            if reason is None
        ]
        instant = np.array([_epoch_ns([created_at[row]])[0] for row in fine], dtype=np.int64)
        if fine:
            picked = [
                _pick(column, fine) for column in (transaction_id, customer_id, terminal_id, amount, tx_fraud)
            ]
            self._history.remember(self._batch(picked[0], instant, *picked[1:]))
        instants = [REJECTED] * len(transaction_id)
        for row, value in zip(fine, instant.tolist(), strict=True):
            instants[row] = value
        return instants

    def score(self, transaction_id: list[int]) -> list[Scored]:
        """Score remembered transactions, each as it was remembered."""
        features = self._history.features(transaction_id)
        labels = self._history.labels(transaction_id).astype(np.int64)
        scores, version = self._model.score(pd.DataFrame(features, columns=FEATURES))
        alerts = (scores >= self._alert_threshold).tolist()
        return [
            (risk, alert, tuple(features[row].tolist()) if alert else (), version, label)
            for row, (risk, alert, label) in enumerate(
                zip(scores.tolist(), alerts, labels.tolist(), strict=True)
            )
        ]

    def _batch(
        self,
        transaction_id: list[int],
        instant: np.ndarray,
        customer_id: list[str],
        terminal_id: list[str],
        amount: list[float],
        tx_fraud: list[int],
    ) -> Batch:
        return Batch(
            card=self._cards.of(customer_id),
            terminal=self._terminals.of(terminal_id),
            instant=instant,
            tie=np.asarray(transaction_id, dtype=np.int64),
            amount=np.asarray(amount, dtype=np.float64),
            fraud=(np.asarray(tx_fraud, dtype=np.float64) > 0).astype(np.float64),
        )


def _pick(values: list, rows: list[int]) -> list:
    return [values[row] for row in rows]


def rejection(created_at: str, customer_id: str, terminal_id: str, amount: float, source: str) -> str | None:
    """Why the platform cannot take this transaction, None if it can."""
    try:
        _epoch_ns([created_at])
    except (ValueError, OverflowError):
        return f"tx_datetime {created_at!r} is not an ISO 8601 time"
    if not math.isfinite(amount) or round(abs(amount), 2) >= MAX_AMOUNT:
        return f"amount {amount!r} is not a number of less than 10 digits before the decimal point"
    for name, value in (("customer_id", customer_id), ("terminal_id", terminal_id)):
        if "\x00" in value:
            return f"{name} contains a NUL character, which PostgreSQL's text cannot hold"
    if _has_control_character(source):
        return "source contains a control character (it goes into a message header)"
    return None


def _instants_if_all_fine(
    created_at: list[str],
    customer_id: list[str],
    terminal_id: list[str],
    amount: list[float],
    source: list[str],
) -> np.ndarray | None:
    """The instants if no row has any of `rejection`'s faults (checked on whole columns), else None."""
    try:
        instant = _epoch_ns(created_at)
    except (ValueError, OverflowError):
        return None
    amounts = np.asarray(amount, dtype=np.float64)
    if not (np.isfinite(amounts).all() and (np.round(np.abs(amounts), 2) < MAX_AMOUNT).all()):
        return None
    if "\x00" in "".join(customer_id) or "\x00" in "".join(terminal_id):
        return None
    if any(map(_has_control_character, set(source))):
        return None
    return instant


def _has_control_character(text: str) -> bool:
    return any(ord(character) < 32 or ord(character) == 127 for character in text)


def _epoch_ns(stamps: list[str]) -> np.ndarray:
    """ISO 8601 times (naive = UTC) -> nanoseconds since the epoch; ValueError if one is not a time."""
    try:
        # The replay's form, parsed several times faster than with the format left to pandas.
        when = pd.to_datetime(pd.Series(stamps), utc=True, format="%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        when = pd.to_datetime(pd.Series(stamps), utc=True, format="ISO8601")
    if when.isna().any():  # an empty string parses as no time (NaT)
        raise ValueError("no time")
    return when.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)
