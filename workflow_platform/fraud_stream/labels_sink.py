"""The delayed labels into `orchestrator.transactions.tx_fraud`, where training reads them; an UPDATE a tick.

Keyed like the scores (scores_sink.py) on (source, source_tx_id). A label whose transaction has no row yet
updates nothing here: the scores' insert carries it (the scorer applies a label that came first). A label
whose source holds a NUL character names no transaction (the scorer rejects those) and is not written: PostgreSQL
would refuse the whole tick.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import psycopg2.extras

from .tick_writer import TickWriter

UPDATE = (
    "UPDATE orchestrator.transactions AS t SET tx_fraud = v.tx_fraud "
    "FROM (VALUES %s) AS v(source, source_tx_id, tx_fraud) "
    "WHERE t.source = v.source AND t.source_tx_id = v.source_tx_id"
)


class LabelsSink:
    """Gathers a tick's labels (`on_change`) and writes them when the tick ends (`on_time_end`)."""

    def __init__(self, dsn: str) -> None:
        self._writer = TickWriter(dsn, "wfp-fraud-stream-labels")
        self._pending: dict[tuple[str, int], int] = {}  # the last label of each transaction in the tick

    def on_change(self, key: Any, row: dict[str, Any], time: int, is_addition: bool) -> None:
        if is_addition and "\x00" not in row["source"]:
            self._pending[(row["source"], row["transaction_id"])] = int(row["fraud"] > 0)

    def on_time_end(self, time: int) -> None:
        if not self._pending:
            return
        rows = [(source, transaction_id, fraud) for (source, transaction_id), fraud in self._pending.items()]
        template = "(%s, %s::bigint, %s::smallint)"
        self._writer.write(
            partial(psycopg2.extras.execute_values, sql=UPDATE, argslist=rows, template=template)
        )
        self._pending = {}

    def on_end(self) -> None:
        self._writer.close()
