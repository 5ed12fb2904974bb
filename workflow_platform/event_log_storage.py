"""dagster-postgres's event log storage, without the NOTIFY it sends after every stored event.

Dagster 1.13 no longer LISTENs for run events (its event watchers poll; dagster-postgres keeps the NOTIFY "to
support version skew", and the platform pins one Dagster version). The NOTIFY is one more round trip for every
event, six to eight a step: ~1.5-2 ms of a step's ~10 ms of platform overhead (bench/step_overhead.py).

    event_log_storage:
      module: workflow_platform.event_log_storage
      class: PostgresEventLogStorage
      config: {postgres_url: {env: DAGSTER_PG_URL}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import dagster_postgres
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqlEventLogStorageTable
from dagster._serdes import ConfigurableClassData
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config


class PostgresEventLogStorage(dagster_postgres.PostgresEventLogStorage):
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
