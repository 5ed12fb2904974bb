"""The platform's one Dagster instance: where it lives, and its storage connections in long-lived processes.

Every entry point records into the same instance: `wfp run`, `wfp backfill`, `wfp up` (webserver, daemon, API,
warm workers) and the dagster CLI after `eval "$(wfp stack env)"`. It is $WFP_HOME/dagster (unless DAGSTER_HOME
is set) with the project's dagster.yaml, its storage in the `dagster` database of the services' PostgreSQL, so a
run started from the CLI shows in the UI of a running `wfp up`.

dagster-postgres opens a new PostgreSQL connection for every query (NullPool); its `optimize_for_webserver` keeps
one, so in a process whose threads query at once (the daemon's dozen daemons, the API's request threads) every
other query still opens and closes a connection: a run queue pass cost 19 connections, ~80 ms. This is that
method with a pool sized for the process's threads: the same engine options (autocommit, statement timeout,
recycle), a pool of `size`, and optionally a ping on checkout so a database restart costs no failed request.
"""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2
from dagster import DagsterInstance
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import create_pg_engine
from psycopg2 import sql
from sqlalchemy import Engine, event, exc
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from workflow_platform.settings import PlatformSettings, variable, wfp_home

DAGSTER_DATABASE = "dagster"
# Used where the current folder has no dagster.yaml (a `wfp run` from elsewhere): the storage, nothing else.
STORAGE_ONLY_YAML = """\
storage:
  postgres:
    postgres_url:
      env: DAGSTER_PG_URL
telemetry:
  enabled: false
"""
STATEMENT_TIMEOUT_MS = 60_000
IDLE_PING_S = 1.0
CONNECT_TIMEOUT_S = 10
POOL_RECYCLE_S = 3600

PostgresStorage = PostgresRunStorage | PostgresEventLogStorage | PostgresScheduleStorage


def dagster_storage_url(admin_dsn: str) -> str:
    """A database of its own for Dagster's storage on the services' PostgreSQL, made with the platform's admin
    connection (WFP_PG_ADMIN_DSN) and closed to other roles: workflow steps never reach the runs and event
    logs. Where it can't be made, Dagster shares the admin's database."""
    url = urlparse(admin_dsn)
    try:
        with closing(psycopg2.connect(admin_dsn, connect_timeout=10)) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DAGSTER_DATABASE,))
                database = sql.Identifier(DAGSTER_DATABASE)
                if cursor.fetchone() is None:
                    cursor.execute(sql.SQL("CREATE DATABASE {}").format(database))
                # Every time: databases made by older versions were open to every role.
                cursor.execute(
                    sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(database)
                )
        url = url._replace(path=f"/{DAGSTER_DATABASE}")
    except psycopg2.Error:
        pass  # no right to create databases: share the admin's database
    # SQLAlchemy 2.1 defaults postgresql:// to psycopg 3; Dagster's storage uses psycopg2.
    return urlunparse(url._replace(scheme="postgresql+psycopg2"))


def instance_environment(admin_dsn: str, instance_yaml: str | None = None) -> dict[str, str]:
    """DAGSTER_HOME and DAGSTER_PG_URL of the platform's instance (its storage reached with the admin DSN:
    `settings.admin_dsn()`). With DAGSTER_HOME unset, the instance is $WFP_HOME/dagster and its dagster.yaml
    is written there: `instance_yaml`, else ./dagster.yaml, else storage only. A DAGSTER_HOME set by the user
    is left as it is."""
    settings = PlatformSettings()
    environment = {variable("dagster_pg_url"): settings.dagster_pg_url or dagster_storage_url(admin_dsn)}
    if settings.dagster_home:
        return {**environment, variable("dagster_home"): settings.dagster_home}
    home = wfp_home() / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    project_yaml = Path.cwd() / "dagster.yaml"
    text = instance_yaml or (project_yaml.read_text() if project_yaml.exists() else STORAGE_ONLY_YAML)
    target = home / "dagster.yaml"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    return {**environment, variable("dagster_home"): str(home)}


def pool_storage_connections(instance: DagsterInstance, size: int, name: str, ping_idle: bool = True) -> None:
    """Storages on the same database share one pool. `name` is the connections' application_name (what
    pg_stat_activity shows: wfp-daemon, wfp-run-worker, ...)."""
    engines: dict[str, Engine] = {}
    for storage in (instance.run_storage, instance.event_log_storage, instance.schedule_storage):
        if not isinstance(storage, PostgresStorage):
            continue
        engine = engines.get(storage.postgres_url)
        if engine is None:
            engine = engines[storage.postgres_url] = _pooled_engine(storage, size, name, ping_idle)
        storage._engine.dispose()  # noqa: SLF001 - the engine optimize_for_webserver replaces too
        storage._engine = engine  # noqa: SLF001


def storage_engines(instance: DagsterInstance) -> list[Engine]:
    """The engines of the instance's PostgreSQL storages, each once."""
    engines = {}
    for storage in (instance.run_storage, instance.event_log_storage, instance.schedule_storage):
        if isinstance(storage, PostgresStorage):
            engines[id(storage._engine)] = storage._engine  # noqa: SLF001
    return list(engines.values())


def _pooled_engine(storage: PostgresStorage, size: int, name: str, ping_idle: bool) -> Engine:
    engine = create_pg_engine(
        storage.postgres_url,
        storage._token_provider,  # noqa: SLF001 - what optimize_for_webserver passes too
        isolation_level="AUTOCOMMIT",
        pool_size=size,
        max_overflow=size,
        pool_recycle=POOL_RECYCLE_S,
        connect_args={
            "application_name": name,
            # Without a timeout, connecting to a host that drops packets would hang the request instead of failing.
            "connect_timeout": CONNECT_TIMEOUT_S,
            # Dagster's statement timeout, sent with the connection request: dagster-postgres sets it with a
            # transaction of three statements on every new connection.
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        },
    )
    if ping_idle:
        _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: Engine) -> None:
    """A connection idle in the pool for over IDLE_PING_S is pinged when checked out, and replaced if dead: after
    PostgreSQL restarts, every pooled connection is, and the requests that drew them would fail one by one. A
    ping on every checkout (pool_pre_ping) would cost a round trip per query."""

    def idle_from_now(dbapi_connection: object, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    def ping_if_idle(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, _: object) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) < IDLE_PING_S:
            return
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
        except psycopg2.Error as error:
            # The server went away, so did the pool's other connections: all are replaced, this one at once.
            raise exc.InvalidatePoolError(str(error)) from error

    event.listen(engine, "connect", idle_from_now)
    event.listen(engine, "checkin", idle_from_now)
    event.listen(engine, "checkout", ping_if_idle)
