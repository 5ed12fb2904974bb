"""PostgreSQL LISTEN/NOTIFY on the Dagster instance's database: how the platform's processes tell each other
that something happened instead of polling for it.

- `wfp_run_queue`: a run was queued (the coordinator, wherever it runs) -> the daemon dequeues at once;
- `wfp_run_ends`: a run ended (its status is stored; workflow_platform/instance/storage.py) -> the API answers
  the clients waiting for it.

A notification can be missed (the listener reconnecting, a storage that is not PostgreSQL): listeners keep a
slow fallback poll. Without PostgreSQL storage nothing is sent.
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

log = logging.getLogger("workflow_platform.instance.notifications")

RUN_QUEUE = "wfp_run_queue"
RUN_ENDS = "wfp_run_ends"


def postgres_url(instance: DagsterInstance) -> str | None:
    url = getattr(instance.run_storage, "postgres_url", None)
    return url.replace("postgresql+psycopg2://", "postgresql://", 1) if url else None


def notify(instance: DagsterInstance, channel: str, payload: str) -> None:
    if postgres_url(instance) is None:
        return
    try:
        with instance.run_storage.connect() as connection:  # ty: ignore[unresolved-attribute]
            connection.execute(
                text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
            )
    except Exception:  # a missed notification only delays the listener to its fallback poll
        log.warning("could not notify %s", channel, exc_info=True)


class Notifications:
    """What a listener waits on: notifications on one channel, and `wake()` from this process."""

    def __init__(self, instance: DagsterInstance, channel: str) -> None:
        self._url = postgres_url(instance)
        self._channel = channel
        self._connection: psycopg2.extensions.connection | None = None
        self._payloads: list[str] = []
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)

    def __enter__(self) -> Notifications:
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

    def take(self) -> list[str]:
        """The payloads received since the last call."""
        payloads, self._payloads = self._payloads, []
        return payloads

    def _listening(self) -> psycopg2.extensions.connection | None:
        if self._url is None:
            return None
        if self._connection is None or self._connection.closed:
            try:
                self._connection = psycopg2.connect(self._url, connect_timeout=5)
                self._connection.autocommit = True
                with self._connection.cursor() as cursor:
                    cursor.execute(f"LISTEN {self._channel}")
            except psycopg2.Error:
                self._connection = None  # the database is down: wait on the timeout, try again next time
        return self._connection

    def wait(self, timeout: float) -> bool:
        """True when woken before `timeout`; wake-ups already received count (and are consumed)."""
        connection = self._listening()
        sources = [self._wake_read] + ([connection] if connection is not None else [])
        readable, _, _ = select.select(sources, [], [], timeout)
        woken = False
        if self._wake_read in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_read, 4096):
                    pass
            woken = True
        if connection is not None and connection in readable:
            try:
                connection.poll()
                woken = woken or bool(connection.notifies)
                self._payloads.extend(notification.payload for notification in connection.notifies)
                connection.notifies.clear()
            except psycopg2.Error:
                connection.close()
                woken = True  # reconnecting may have missed a notification: look for yourself
        return woken

    def drain(self) -> None:
        """Forget wake-ups that arrived so far (the listener is about to look at everything anyway)."""
        self.wait(0)
        self._payloads.clear()
