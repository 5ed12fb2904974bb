"""Transactions -> their window features and the model's fraud probability, a batch at a time, vectorised.

The dataflow calls `remember` with the rows of a tick (transactions, and the delayed labels of feedback.py),
then `score` with the same transactions (both as batched UDFs, which Pathway calls with up to about a thousand
rows at a time, in no particular order): each transaction is scored on the transactions remembered up to then,
those before it in time, however the tick was cut. A
transaction arriving after later ones is scored on what was there; earlier scores are not revised, nor by a
label: a label counts in the windows of the transactions scored after it.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from workflow_platform.fraud.features import FEATURES

from .history import Batch, Codes, RecentHistory
from .latest_model import LatestModel

# (risk score, whether it is an alert, its 15 features in FEATURES order if so (else none), model version, the
# transaction's label then)
Scored = tuple[float, bool, tuple[float, ...], str, int]


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
    ) -> list[int]:
        """Apply the labels and remember the transactions (rows of either, `is_label` tells which); returns
        the transactions' instants (UTC epoch nanoseconds), which `score` takes, and 0 for the labels."""
        if not any(is_label):  # the usual tick: transactions only
            return self._remember(transaction_id, created_at, customer_id, terminal_id, amount, tx_fraud)
        labels = [row for row, label in enumerate(is_label) if label]
        self._history.label(_pick(transaction_id, labels), [float(f > 0) for f in _pick(tx_fraud, labels)])
        rows = [row for row, label in enumerate(is_label) if not label]
        columns = (transaction_id, created_at, customer_id, terminal_id, amount, tx_fraud)
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
    ) -> list[int]:
        instant = _epoch_ns(created_at)
        self._history.remember(
            self._batch(transaction_id, instant, customer_id, terminal_id, amount, tx_fraud)
        )
        return instant.tolist()

    def score(
        self,
        transaction_id: list[int],
        instant: list[int],
        customer_id: list[str],
        terminal_id: list[str],
        amount: list[float],
        tx_fraud: list[int],
    ) -> list[Scored]:
        batch = self._batch(
            transaction_id, np.asarray(instant, dtype=np.int64), customer_id, terminal_id, amount, tx_fraud
        )
        features = self._history.features(batch, len(self._cards), len(self._terminals))
        labels = self._history.labels(batch.tie).astype(np.int64)
        model = self._model.current()
        frame = pd.DataFrame(features, columns=FEATURES)[model.features]
        scores = model.estimator.predict_proba(frame)[:, 1]
        alerts = (scores >= self._alert_threshold).tolist()
        return [
            (risk, alert, tuple(features[row].tolist()) if alert else (), model.version, label)
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


def _epoch_ns(stamps: list[str]) -> np.ndarray:
    """ISO 8601 times (naive = UTC) -> nanoseconds since the epoch."""
    try:
        # The replay's form, parsed several times faster than with the format left to pandas.
        when = pd.to_datetime(pd.Series(stamps), utc=True, format="%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        when = pd.to_datetime(pd.Series(stamps), utc=True, format="ISO8601")
    return when.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)
