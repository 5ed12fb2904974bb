"""Database outages as 503s: the API answers "PostgreSQL is not reachable; retry" (with Retry-After) while the
Dagster instance's storage or the services' database cannot be reached, instead of a 500 with a traceback."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg2
import psycopg2.errors
import sqlalchemy.exc
from dagster_postgres.utils import DagsterPostgresException
from fastapi.responses import JSONResponse

from workflow_platform.api.errors import ApiError

RETRY_AFTER_S = 5
# What a route may raise when PostgreSQL is away: the handlers look inside for a lost or refused connection.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    psycopg2.Error,
    sqlalchemy.exc.SQLAlchemyError,
    DagsterPostgresException,
)


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
    if isinstance(error, DagsterPostgresException):  # Dagster's storage gave up connecting after its retries
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
