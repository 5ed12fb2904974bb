"""A tick's transactions -> their window features and the model's fraud probability, in one vectorised pass.

`Scorer.score` is what the dataflow's batched UDF calls with the tick's rows (in no particular order): it
orders them by time (ties by transaction id), computes their features against the recent history
(`history.RecentHistory`), scores them all with one `predict_proba` call and returns one result per input row,
in input order. Each transaction is scored once, on what the stream had seen up to it: a transaction arriving
after later ones is not held back, and earlier scores are not revised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workflow_platform.fraud.features import FEATURES

from .history import Batch, Codes, RecentHistory
from .latest_model import LatestModel

# (risk score, the 15 features in FEATURES order, model version)
Scored = tuple[float, tuple[float, ...], str]


class Scorer:
    def __init__(self, model: LatestModel) -> None:
        from threadpoolctl import threadpool_limits

        # What `fraud.model.score` does per call (one OpenMP thread: a second one spinning on the shared cores
        # slows scoring down), set once for the process: per call it cost ~7 ms, more than a tick's scoring.
        threadpool_limits(limits=1, user_api="openmp")
        self._model = model
        self._history = RecentHistory()
        self._cards = Codes()
        self._terminals = Codes()

    def score(
        self,
        transaction_id: list[int],
        created_at: list[str],
        customer_id: list[str],
        terminal_id: list[str],
        amount: list[float],
        tx_fraud: list[int],
    ) -> list[Scored]:
        instant = _epoch_ns(created_at)
        ids = np.asarray(transaction_id, dtype=np.int64)
        order = np.lexsort((ids, instant))
        batch = Batch(
            card=self._cards.of(customer_id)[order],
            terminal=self._terminals.of(terminal_id)[order],
            instant=instant[order],
            tie=ids[order],
            amount=np.asarray(amount, dtype=np.float64)[order],
            fraud=(np.asarray(tx_fraud, dtype=np.float64) > 0).astype(np.float64)[order],
        )
        features = np.empty((len(order), len(FEATURES)))
        features[order] = self._history.features(batch, len(self._cards), len(self._terminals))
        model = self._model.current()
        scores = model.estimator.predict_proba(pd.DataFrame(features, columns=FEATURES)[model.features])[:, 1]
        return [
            (risk, tuple(row), model.version)
            for risk, row in zip(scores.tolist(), features.tolist(), strict=True)
        ]


def _epoch_ns(stamps: list[str]) -> np.ndarray:
    """ISO 8601 times (naive = UTC) -> nanoseconds since the epoch."""
    try:
        # The replay's form, parsed several times faster than with the format left to pandas.
        when = pd.to_datetime(pd.Series(stamps), utc=True, format="%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        when = pd.to_datetime(pd.Series(stamps), utc=True, format="ISO8601")
    return when.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)
