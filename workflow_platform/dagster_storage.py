"""dagster-postgres's run and event log storages, less two costs paid on every run (bench/step_overhead.py):

- The run storage asks the database catalog whether the `runs` table has columns added by past migrations on
  every run read and write (a reflection query each, ~15 per run across the daemon, API and worker). A column
  that exists stays: the answer "yes" is kept. The schema changes only through `dagster instance migrate`,
  after which Dagster's processes are restarted anyway.
And one notification added: a run that ends is announced with `NOTIFY wfp_run_ends, '<run id>'` once its status
is stored, so the API's clients waiting for it (`GET /api/executions/{id}?wait=N`) are answered at once instead
of by polling every waiter's run.

- The event log storage sends a NOTIFY after every stored event. Dagster 1.13 no longer LISTENs (its event
  watchers poll; dagster-postgres keeps it "to support version skew", and the platform pins one version): a
  round trip for every event, six to eight a step, ~1.5-2 ms of a step's ~10 ms.

    run_storage:
      module: workflow_platform.dagster_storage
      class: PostgresRunStorage
      config: {postgres_url: {env: DAGSTER_PG_URL}}
    event_log_storage:
      module: workflow_platform.dagster_storage
      class: PostgresEventLogStorage
      config: {postgres_url: {env: DAGSTER_PG_URL}}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Self

import dagster_postgres
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, DagsterEvent, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqlEventLogStorageTable
from dagster._serdes import ConfigurableClassData
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config
from sqlalchemy import text

from workflow_platform.notifications import RUN_ENDS

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


class PostgresRunStorage(_FromConfig, dagster_postgres.PostgresRunStorage):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._columns_present: set[str] = set()
        super().__init__(*args, **kwargs)

    def _present(self, check: str, ask: Callable[[], bool]) -> bool:
        if check not in self._columns_present and ask():
            self._columns_present.add(check)
        return check in self._columns_present

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


class PostgresEventLogStorage(_FromConfig, dagster_postgres.PostgresEventLogStorage):
    def store_event(self, event: EventLogEntry) -> None:
        """dagster_postgres's store_event, less the NOTIFY."""
        insert = self.prepare_insert_event(event).returning(SqlEventLogStorageTable.c.id)
        with self._connect() as conn:
            event_id = int(conn.execute(insert).scalar_one())
        dagster_event = event.dagster_event
        if dagster_event is not None and dagster_event.event_type in ASSET_EVENTS and dagster_event.asset_key:
            with self.index_transaction() as conn:
                self._store_asset_event_tags(conn, [event], [event_id])
                self._store_asset_event(conn, event, event_id)
        if dagster_event is not None and dagster_event.event_type in ASSET_CHECK_EVENTS:
            self.store_asset_check_event(event, event_id)
