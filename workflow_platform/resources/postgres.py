from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager

import dagster as dg
import psycopg2
import psycopg2.extensions
from pydantic import PrivateAttr

from workflow_platform.settings import ServiceSettings


class PostgresResource(dg.ConfigurableResource):
    """PostgreSQL through psycopg2. One connection per run, opened on first use and closed at teardown."""

    dsn: str

    _connection: psycopg2.extensions.connection | None = PrivateAttr(default=None)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> PostgresResource:
        """Outside a Dagster run (API, CLI, preflight): the workflows' role."""
        return cls(dsn=settings.require("pg_dsn"))

    def connect(self) -> psycopg2.extensions.connection:
        if self._connection is None or self._connection.closed:
            self._connection = self._open()
        return self._connection

    def _open(self) -> psycopg2.extensions.connection:
        return psycopg2.connect(self.dsn, connect_timeout=10, application_name="workflow-platform")

    @contextmanager
    def autocommit(self) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor on a connection of its own, closed after, where each statement commits alone (its own
        snapshot): for readers that must hold no transaction open, like the row-cursor sensor."""
        with closing(self._open()) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                yield cursor

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
