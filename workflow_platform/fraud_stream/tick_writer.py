"""One PostgreSQL connection (the workflows' role, WFP_PG_DSN) that writes a tick's rows in one statement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class TickWriter:
    """Connects on first use and again after a failure; `write` commits a tick's rows, or none of them."""

    def __init__(self, dsn: str, application_name: str) -> None:
        self._dsn, self._application_name = dsn, application_name
        self._connection: Any = None

    def write(self, sql: str, rows: Sequence[tuple], template: str | None = None) -> None:
        import psycopg2.extras

        with self._connect(), self._connection.cursor() as cursor:
            psycopg2.extras.execute_values(cursor, sql, rows, template=template, page_size=5000)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()

    def _connect(self) -> Any:
        import psycopg2

        if self._connection is None or self._connection.closed:
            self._connection = psycopg2.connect(
                self._dsn, connect_timeout=10, application_name=self._application_name
            )
        return self._connection
