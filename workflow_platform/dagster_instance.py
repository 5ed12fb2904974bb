"""The Dagster instance as the platform's long-lived processes use it: storage connections kept in a pool.

dagster-postgres opens a new PostgreSQL connection for every query (NullPool); its `optimize_for_webserver` keeps
one, so in a process whose threads query at once (the daemon's dozen daemons, the API's request threads) every
other query still opens and closes a connection: a run queue pass cost 19 connections, ~80 ms. This is that
method with a pool sized for the process's threads: the same engine options (autocommit, statement timeout,
recycle), a pool of `size`, and optionally a ping on checkout so a database restart costs no failed request.
"""

from __future__ import annotations

from dagster import DagsterInstance
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import create_pg_engine, set_pg_statement_timeout
from sqlalchemy import Engine, event

STATEMENT_TIMEOUT_MS = 60_000
POOL_RECYCLE_S = 3600

PostgresStorage = PostgresRunStorage | PostgresEventLogStorage | PostgresScheduleStorage


def pool_storage_connections(instance: DagsterInstance, size: int, name: str, pre_ping: bool = True) -> None:
    """Storages on the same database share one pool. `name` is the connections' application_name (what
    pg_stat_activity shows: wfp-daemon, wfp-run-worker, ...)."""
    engines: dict[str, Engine] = {}
    for storage in (instance.run_storage, instance.event_log_storage, instance.schedule_storage):
        if not isinstance(storage, PostgresStorage):
            continue
        engine = engines.get(storage.postgres_url)
        if engine is None:
            engine = engines[storage.postgres_url] = _pooled_engine(storage, size, name, pre_ping)
        storage._engine.dispose()  # noqa: SLF001 - the engine optimize_for_webserver replaces too
        storage._engine = engine  # noqa: SLF001


def _pooled_engine(storage: PostgresStorage, size: int, name: str, pre_ping: bool) -> Engine:
    engine = create_pg_engine(
        storage.postgres_url,
        storage._token_provider,  # noqa: SLF001 - what optimize_for_webserver passes too
        isolation_level="AUTOCOMMIT",
        pool_size=size,
        max_overflow=size,
        pool_recycle=POOL_RECYCLE_S,
        pool_pre_ping=pre_ping,
        connect_args={"application_name": name},
    )
    event.listen(
        engine, "connect", lambda connection, _: set_pg_statement_timeout(connection, STATEMENT_TIMEOUT_MS)
    )
    return engine
