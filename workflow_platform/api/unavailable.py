"""Database outages as 503s: the API answers "PostgreSQL is not reachable; retry" (with Retry-After) while the
Dagster instance's storage or the services' database cannot be reached, instead of a 500 with a traceback.

Dagster's PostgreSQL storage retries a refused connection for about 11 s (retry_pg_connection_fn) before it gives
up: right for a daemon riding out a restart, too long for a client waiting on an answer (many time out at 10 s).
The API's storage engines therefore turn a refused connection into StorageUnreachable, which those retries let
through, and the client gets its 503 at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import psycopg2
import psycopg2.errors
import sqlalchemy.exc
from dagster_postgres.utils import DagsterPostgresException
from fastapi.responses import JSONResponse
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext

from workflow_platform.api.errors import ApiError
from workflow_platform.instance.database import storage_engines

RETRY_AFTER_S = 5


class StorageUnreachable(Exception):
    """The Dagster instance's storage refused or dropped a new connection (no retries: a client is waiting)."""


# What a route may raise when PostgreSQL is away: the handlers look inside for a lost or refused connection.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    psycopg2.Error,
    sqlalchemy.exc.SQLAlchemyError,
    DagsterPostgresException,
    StorageUnreachable,
)


def fail_fast_when_unreachable(instance: dg.DagsterInstance) -> None:
    """A connection the instance's PostgreSQL storage cannot open fails the request at once (see above)."""

    def refused(context: ExceptionContext) -> BaseException | None:
        if context.connection is None and isinstance(context.original_exception, psycopg2.OperationalError):
            return StorageUnreachable(str(context.original_exception))
        return None

    for engine in storage_engines(instance):
        event.listen(engine, "handle_error", refused)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _connection_lost(error: BaseException) -> bool:
    if isinstance(error, psycopg2.errors.QueryCanceled):  # a statement timeout: the server answered
        return False
    if isinstance(error, StorageUnreachable | DagsterPostgresException):  # no connection could be opened
        return True
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        return error.connection_invalidated or _connection_lost(error.orig)
    return isinstance(error, psycopg2.OperationalError | psycopg2.InterfaceError)


def database_unreachable(error: BaseException) -> str | None:
    """Why PostgreSQL could not be reached, if that is what `error` (or an error it wraps) says; else None."""
    causes = [e for e in _chain(error) if _connection_lost(e)]
    if not causes:
        return None
    # The innermost cause is the driver's own message ("connection to server at ... failed: Connection refused").
    reason = str(getattr(causes[-1], "orig", None) or causes[-1]).strip().splitlines()
    return reason[0] if reason else type(causes[-1]).__name__


def unavailable_response(reason: str) -> JSONResponse:
    return ApiError(
        503,
        "service_unavailable",
        f"PostgreSQL is not reachable ({reason}); retry in a few seconds",
        headers={"Retry-After": str(RETRY_AFTER_S)},
        service="postgresql",
    ).response()
