"""dagster-postgres's storages, less costs paid on every run (bench/step_overhead.py, bench/api_submit.py):

- They ask the database catalog whether tables, columns and indexes added by past migrations exist, on every
  run read and write, stored asset event and sensor tick (a reflection query each: ~15 per run across the
  daemon, API and worker, and ~3 a second in an idle daemon). A table or column that exists stays: the answer
  "yes" is kept. The schema changes only through `dagster instance migrate`, after which Dagster's processes
  are restarted anyway. `learn_schema` asks every question once: the warm launcher's zygote does so before it
  forks, so its single-use workers know the answers from the start.
- The event log storage sends a NOTIFY after every stored event. Dagster 1.13 no longer LISTENs (its event
  watchers poll; dagster-postgres keeps it "to support version skew", and the platform pins one version): a
  round trip for every event, six to eight a step, ~1.5-2 ms of a step's ~10 ms.
And one notification added: a run that ends is announced with `NOTIFY wfp_run_ends, '<run id>'` once its status
is stored, so the API's clients waiting for it (`GET /api/executions/{id}?wait=N`) are answered at once instead
of by polling every waiter's run.

    run_storage:
      module: workflow_platform.instance.storage
      class: PostgresRunStorage
      config: {postgres_url: {env: DAGSTER_PG_URL}}
    event_log_storage:
      module: workflow_platform.instance.storage
      class: PostgresEventLogStorage
      config: {postgres_url: {env: DAGSTER_PG_URL}}
    schedule_storage:
      module: workflow_platform.instance.storage
      class: PostgresScheduleStorage
      config: {postgres_url: {env: DAGSTER_PG_URL}}
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Self

import dagster_postgres
from dagster import DagsterInstance
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, DagsterEvent, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.migration import ASSET_DATA_MIGRATIONS, EVENT_LOG_DATA_MIGRATIONS
from dagster._core.storage.runs.migration import OPTIONAL_DATA_MIGRATIONS, REQUIRED_DATA_MIGRATIONS
from dagster._core.storage.schedules.migration import (
    OPTIONAL_SCHEDULE_DATA_MIGRATIONS,
    REQUIRED_SCHEDULE_DATA_MIGRATIONS,
)
from dagster._serdes import ConfigurableClassData
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config
from sqlalchemy import text

from workflow_platform.instance.notifications import RUN_ENDS

# Tables whose existence the event log storage checks before it uses them.
EVENT_LOG_TABLES = (
    "asset_event_tags",
    "dynamic_partitions",
    "concurrency_limits",
    "concurrency_slots",
    "pending_steps",
    "asset_check_executions",
)
# SqlEventLogStorage.prepare_insert_event's statement, in the driver's parameter style.
INSERT_EVENT = (
    "INSERT INTO event_logs (run_id, event, dagster_event_type, timestamp, step_key, asset_key, partition) "
    "VALUES (%(run_id)s, %(event)s, %(dagster_event_type)s, %(timestamp)s, %(step_key)s, %(asset_key)s, "
    "%(partition)s) RETURNING id"
)
SNAPSHOTS_KEPT = 256
RUN_END_EVENTS = frozenset(
    {DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_CANCELED}
)


class _FromConfig:
    """dagster-postgres's from_config_value names its own class; build the subclass instead."""

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> Self:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )


class _SchemaFacts:
    """The parts of the schema found present, kept for the life of the process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._schema_present: set[str] = set()
        super().__init__(*args, **kwargs)

    def _present(self, check: str, ask: Callable[[], bool]) -> bool:
        if check not in self._schema_present and ask():
            self._schema_present.add(check)
        return check in self._schema_present


class PostgresRunStorage(_FromConfig, _SchemaFacts, dagster_postgres.PostgresRunStorage):
    """Also keeps the job and execution plan snapshots it has read or found: a snapshot's id is the hash of its
    content, so what is stored under an id never changes (the API asked for the same plan snapshot, and whether
    two snapshots exist, on every run it created)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._snapshots: OrderedDict[str, Any] = OrderedDict()
        self._snapshots_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def _has_snapshot_id(self, snapshot_id: str) -> bool:
        return snapshot_id in self._snapshots or self._present(
            f"snapshot {snapshot_id}", lambda: super(PostgresRunStorage, self)._has_snapshot_id(snapshot_id)
        )

    def remember_snapshot(self, snapshot_id: str, snapshot: Any) -> None:
        """A snapshot computed here (its id is its content's hash), kept as if it had been read."""
        with self._snapshots_lock:
            self._snapshots[snapshot_id] = snapshot
            if len(self._snapshots) > SNAPSHOTS_KEPT:
                self._snapshots.popitem(last=False)

    def _get_snapshot(self, snapshot_id: str) -> Any:
        with self._snapshots_lock:  # the API's and daemon's threads share the storage
            if snapshot_id in self._snapshots:
                self._snapshots.move_to_end(snapshot_id)
                return self._snapshots[snapshot_id]
        snapshot = super()._get_snapshot(snapshot_id)
        if snapshot is not None:
            self.remember_snapshot(snapshot_id, snapshot)
        return snapshot

    def learn_schema(self) -> None:
        self.has_run_stats_index_cols()
        self.has_backfill_id_column()
        self.has_bulk_actions_selector_cols()
        self.has_bulk_action_job_name_column()
        for migration in (*REQUIRED_DATA_MIGRATIONS, *OPTIONAL_DATA_MIGRATIONS):
            self.has_built_index(migration)

    def has_run_stats_index_cols(self) -> bool:
        return self._present("run_stats_index_cols", super().has_run_stats_index_cols)

    def has_backfill_id_column(self) -> bool:
        return self._present("backfill_id_column", super().has_backfill_id_column)

    def has_bulk_actions_selector_cols(self) -> bool:
        return self._present("bulk_actions_selector_cols", super().has_bulk_actions_selector_cols)

    def has_bulk_action_job_name_column(self) -> bool:
        return self._present("bulk_action_job_name_column", super().has_bulk_action_job_name_column)

    def handle_run_event(
        self, run_id: str, event: DagsterEvent, update_timestamp: datetime | None = None
    ) -> None:
        super().handle_run_event(run_id, event, update_timestamp)
        if event.event_type in RUN_END_EVENTS:  # after the status is stored: a waiter woken now reads it
            with self.connect() as conn:
                conn.execute(
                    text("SELECT pg_notify(:channel, :run_id)"),
                    {"channel": RUN_ENDS, "run_id": run_id},
                )


class PostgresEventLogStorage(_FromConfig, _SchemaFacts, dagster_postgres.PostgresEventLogStorage):
    def has_table(self, table_name: str) -> bool:
        return self._present(
            f"table {table_name}", lambda: super(PostgresEventLogStorage, self).has_table(table_name)
        )

    def has_asset_key_col(self, column_name: str) -> bool:
        return self._present(
            f"asset_keys.{column_name}",
            lambda: super(PostgresEventLogStorage, self).has_asset_key_col(column_name),
        )

    def learn_schema(self) -> None:
        for table in EVENT_LOG_TABLES:
            self.has_table(table)
        self.has_asset_key_index_cols()
        for migration in (*EVENT_LOG_DATA_MIGRATIONS, *ASSET_DATA_MIGRATIONS):
            self.has_secondary_index(migration)

    def store_event(self, event: EventLogEntry) -> None:
        """dagster_postgres's store_event, less the NOTIFY and, for an asset event without tags to index, the
        transaction around its single asset key upsert. The event's row is Dagster's (`_event_to_row`), inserted
        with one fixed statement rather than a SQL expression built and compiled for every event."""
        with self._connect() as conn:
            event_id = int(conn.exec_driver_sql(INSERT_EVENT, self._event_to_row(event)).scalar_one())
        dagster_event = event.dagster_event
        if dagster_event is not None and dagster_event.event_type in ASSET_EVENTS and dagster_event.asset_key:
            if self._tags_for_asset_event(event):
                with self.index_transaction() as conn:
                    self._store_asset_event_tags(conn, [event], [event_id])
                    self._store_asset_event(conn, event, event_id)
            else:  # one statement: no transaction (and no isolation level set and reset around it)
                with self.index_connection() as conn:
                    self._store_asset_event(conn, event, event_id)
        if dagster_event is not None and dagster_event.event_type in ASSET_CHECK_EVENTS:
            self.store_asset_check_event(event, event_id)


class PostgresScheduleStorage(_FromConfig, _SchemaFacts, dagster_postgres.PostgresScheduleStorage):
    def has_secondary_index_table(self) -> bool:
        return self._present("table secondary_indexes", super().has_secondary_index_table)

    def has_instigators_table(self) -> bool:
        return self._present("table instigators", super().has_instigators_table)

    def has_built_index(self, migration_name: str) -> bool:
        return self._present(
            f"index {migration_name}",
            lambda: super(PostgresScheduleStorage, self).has_built_index(migration_name),
        )

    def learn_schema(self) -> None:
        self.has_instigators_table()
        for migration in (*REQUIRED_SCHEDULE_DATA_MIGRATIONS, *OPTIONAL_SCHEDULE_DATA_MIGRATIONS):
            self.has_built_index(migration)


def learn_schema(instance: DagsterInstance) -> None:
    """Ask the instance's storages every schema question they would ask later, once (see the module's doc)."""
    for storage in (instance.run_storage, instance.event_log_storage, instance.schedule_storage):
        if isinstance(storage, _SchemaFacts):
            storage.learn_schema()
