"""The scores into `orchestrator.transactions`: one keyed upsert per tick, as the workflows' role (WFP_PG_DSN).

A streamed transaction is keyed by (source, source_tx_id), the key `wfp seed transactions` loads the same
transactions under: a row already there (seeded, or written before a restart) gets its risk_score, fraud_flag
and processed_at, the columns the batch workflow writes; a new one is inserted whole. Writing a tick again
(after a restart replays it) changes nothing but processed_at, so each transaction has exactly one row.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from .tick_writer import TickWriter

log = logging.getLogger(__name__)

COLUMNS = (
    "source",
    "source_tx_id",
    "customer_id",
    "merchant_id",
    "terminal_id",
    "amount",
    "created_at",
    "tx_fraud",
    "risk_score",
    "fraud_flag",
    "processed_at",
)
UPSERT = (
    f"INSERT INTO orchestrator.transactions ({', '.join(COLUMNS)}) VALUES %s "
    "ON CONFLICT (source, source_tx_id) DO UPDATE SET risk_score = EXCLUDED.risk_score, "
    "fraud_flag = EXCLUDED.fraud_flag, processed_at = EXCLUDED.processed_at"
)


class ScoresSink:
    """Gathers a tick's scored rows (`on_change`) and upserts them when the tick ends (`on_time_end`)."""

    def __init__(self, dsn: str) -> None:
        self._writer = TickWriter(dsn, "wfp-fraud-stream")
        self._pending: list[tuple] = []

    def on_change(self, key: Any, row: dict[str, Any], time: int, is_addition: bool) -> None:
        # A score, once given, is final: the stream never retracts one (see scorer.py).
        if is_addition:
            self._pending.append(
                (
                    row["source"],
                    row["transaction_id"],
                    row["customer_id"],
                    row["terminal_id"],
                    _numeric_id(row["terminal_id"]),
                    row["amount"],
                    row["created_at"],
                    row["tx_fraud"],
                    row["risk_score"],
                    row["fraud_flag"],
                )
            )

    def on_time_end(self, time: int) -> None:
        if not self._pending:
            return
        now = dt.datetime.now(dt.UTC)
        self._writer.write(UPSERT, [(*row, now) for row in self._pending])
        self._pending = []

    def on_end(self) -> None:
        self._writer.close()


def _numeric_id(terminal: str) -> int | None:
    """terminal_id as a number where it is one (the simulator's), as `wfp seed transactions` stores it."""
    return int(terminal) if terminal.isdigit() else None
