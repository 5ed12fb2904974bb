from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg2
import psycopg2.extensions
from pydantic import PrivateAttr


class PostgresResource(dg.ConfigurableResource):
    """PostgreSQL through psycopg2. One connection per run, opened on first use and closed at teardown."""

    dsn: str

    _connection: psycopg2.extensions.connection | None = PrivateAttr(default=None)

    def connect(self) -> psycopg2.extensions.connection:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg2.connect(
                self.dsn, connect_timeout=10, application_name="workflow-platform"
            )
        return self._connection

    @contextmanager
    def transaction(self, timeout_s: float | None = None) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor inside one transaction: committed on success, rolled back on any error."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                if timeout_s:
                    cursor.execute("SET LOCAL statement_timeout = %s", (int(timeout_s * 1000),))
                yield cursor
            connection.commit()
        except BaseException:
            if not connection.closed:
                connection.rollback()
            raise

    def cancel(self) -> None:
        """Cancel the query running on this resource's connection, if any (from another thread: a step that
        timed out, a run being terminated)."""
        if self._connection is not None and not self._connection.closed:
            self._connection.cancel()

    def close(self) -> None:
        if self._connection is not None and not self._connection.closed:
            self._connection.close()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()
