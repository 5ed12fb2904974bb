"""One PostgreSQL connection (the workflows' role, WFP_PG_DSN) that writes each tick in one transaction, on a
thread of its own.

Pathway calls the sinks on its one worker thread, which would otherwise wait for each upsert (a quarter of a
drain's time): the writes go to a thread and overlap the next ticks' scoring. A few ticks may wait (`AHEAD`);
past that `write` blocks, so a slow database slows the stream instead of filling memory. Nothing is lost when
the process dies with ticks unwritten: their transactions are in Pathway's snapshot, and a restarted pipeline
replays it through the sinks (the writes are idempotent). A failed write fails the next `write` or `close`,
and so the pipeline, which the supervisor restarts.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

Tick = Callable[[Any], None]  # writes a tick's rows with the cursor it is given

AHEAD = 4  # ticks handed to the thread and not written yet, at most


class TickWriter:
    """Connects on first use and again after a failure; each `write` commits a tick's rows, or none of them."""

    def __init__(self, dsn: str, application_name: str, prepare: str | None = None) -> None:
        """`prepare`: SQL run on each new connection (a temporary table the ticks use, say)."""
        self._dsn, self._application_name, self._prepare = dsn, application_name, prepare
        self._connection: Any = None
        self._ticks: queue.Queue[Tick | None] = queue.Queue(AHEAD)
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"{application_name}-writer", daemon=True)
        self._thread.start()

    def write(self, tick: Tick) -> None:
        self._raise_failure()
        self._ticks.put(tick)

    def close(self) -> None:
        """Write what is handed over, then close the connection."""
        if self._thread.is_alive():
            self._ticks.put(None)
            self._thread.join()
        if self._connection is not None:
            self._connection.close()
        self._raise_failure()

    def _run(self) -> None:
        while (tick := self._ticks.get()) is not None:
            if self._failure is not None:
                continue  # dropped: the pipeline is failing, and its restart writes these again
            try:
                with self._connect(), self._connection.cursor() as cursor:
                    tick(cursor)
            except BaseException as exc:  # noqa: BLE001 - handed to the worker thread, which raises it
                self._failure = exc

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError(f"writing to PostgreSQL failed: {self._failure}") from self._failure

    def _connect(self) -> Any:
        import psycopg2

        if self._connection is None or self._connection.closed:
            connection = psycopg2.connect(
                self._dsn, connect_timeout=10, application_name=self._application_name
            )
            if self._prepare:
                with connection, connection.cursor() as cursor:
                    cursor.execute(self._prepare)
            self._connection = connection
        return self._connection
