"""Wake the run-queue daemon as soon as a run is queued, from any process, through PostgreSQL.

The coordinator (webserver, API, the daemon's own sensors and schedules) sends `NOTIFY wfp_run_queue` on the
instance's run storage; the daemon LISTENs on its own connection. Without PostgreSQL storage nothing is sent and
the daemon falls back to its dequeue interval.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
from types import TracebackType

import psycopg2
import psycopg2.extensions
from dagster import DagsterInstance
from sqlalchemy import text

log = logging.getLogger("workflow_platform.launcher")

CHANNEL = "wfp_run_queue"


def _postgres_url(instance: DagsterInstance) -> str | None:
    url = getattr(instance.run_storage, "postgres_url", None)
    return url.replace("postgresql+psycopg2://", "postgresql://", 1) if url else None


def notify_run_queue(instance: DagsterInstance, payload: str) -> None:
    if _postgres_url(instance) is None:
        return
    try:
        with instance.run_storage.connect() as connection:  # ty: ignore[unresolved-attribute]
            connection.execute(
                text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload}
            )
    except Exception:  # a missed wake-up only delays the run to the next dequeue interval
        log.warning("could not notify the run queue", exc_info=True)


class RunQueueWakeups:
    """What the daemon waits on between dequeues: notifications from PostgreSQL, and `wake()` from this process."""

    def __init__(self, instance: DagsterInstance) -> None:
        self._url = _postgres_url(instance)
        self._connection: psycopg2.extensions.connection | None = None
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)

    def __enter__(self) -> RunQueueWakeups:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._connection is not None:
            self._connection.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # already full of wake-ups
            os.write(self._wake_write, b"!")

    def _listening(self) -> psycopg2.extensions.connection | None:
        if self._url is None:
            return None
        if self._connection is None or self._connection.closed:
            try:
                self._connection = psycopg2.connect(self._url, connect_timeout=5)
                self._connection.autocommit = True
                with self._connection.cursor() as cursor:
                    cursor.execute(f"LISTEN {CHANNEL}")
            except psycopg2.Error:
                self._connection = None  # the database is down: wait on the interval, try again next time
        return self._connection

    def wait(self, timeout: float) -> bool:
        """True when woken before `timeout`; wake-ups already received count (and are consumed)."""
        connection = self._listening()
        sources = [self._wake_read] + ([connection] if connection is not None else [])
        readable, _, _ = select.select(sources, [], [], timeout)
        woken = False
        if self._wake_read in readable:
            while True:
                try:
                    if not os.read(self._wake_read, 4096):
                        break
                except BlockingIOError:
                    break
            woken = True
        if connection is not None and connection in readable:
            try:
                connection.poll()
                woken = woken or bool(connection.notifies)
                connection.notifies.clear()
            except psycopg2.Error:
                connection.close()
                woken = True  # reconnecting may have missed a notification: dequeue to be sure
        return woken

    def drain(self) -> None:
        """Forget wake-ups that arrived so far (a dequeue is about to look at the whole queue anyway)."""
        self.wait(0)
