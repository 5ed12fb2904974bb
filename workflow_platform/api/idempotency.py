"""Idempotency-Key: a retried request gets the first request's run, even when the retries race each other.

A key is claimed atomically, with a digest of the request, as the primary key of a small table in the Dagster
instance's database: of concurrent requests with one key, one runs and the others wait for its run. A key reused
with a different request is a 422. A request that fails before it has a run gives its key back, so a corrected
retry is not refused. Keys are kept a day; a claim left without a run for a minute (its API process died) can be
taken over.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy
from sqlalchemy import text

from workflow_platform.api.errors import ApiError

KEPT = "1 day"
ABANDONED_S = 60
WAIT_FOR_FIRST_S = 10.0

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS wfp_idempotency_keys (
        key text PRIMARY KEY,
        digest text NOT NULL,
        run_id text,
        claimed timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX IF NOT EXISTS wfp_idempotency_keys_claimed ON wfp_idempotency_keys (claimed)",
]


def digest(request: Any) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class IdempotencyKeys:
    url: str  # a SQLAlchemy PostgreSQL URL (the Dagster instance's DAGSTER_PG_URL)
    _engine: sqlalchemy.Engine | None = None

    def _connect(self) -> sqlalchemy.Engine:
        if self._engine is None:
            engine = sqlalchemy.create_engine(self.url, pool_size=2, max_overflow=8, pool_pre_ping=True)
            with engine.begin() as connection:
                for statement in _SCHEMA:
                    connection.execute(text(statement))
            self._engine = engine
        return self._engine

    def claim(self, key: str, request_digest: str) -> str | None:
        """None: this request owns the key (it must `record` its run or `release` the key). A run id: the
        request was made before; that is its run."""
        deadline = time.monotonic() + WAIT_FOR_FIRST_S
        while True:
            with self._connect().begin() as connection:
                connection.execute(
                    text(f"DELETE FROM wfp_idempotency_keys WHERE claimed < now() - interval '{KEPT}'")
                )
                claimed = connection.execute(
                    text(
                        "INSERT INTO wfp_idempotency_keys (key, digest) VALUES (:key, :digest) "
                        "ON CONFLICT (key) DO UPDATE SET digest = excluded.digest, claimed = now() "
                        f"WHERE wfp_idempotency_keys.run_id IS NULL "
                        f"AND wfp_idempotency_keys.claimed < now() - interval '{ABANDONED_S} seconds' "
                        "RETURNING key"
                    ),
                    {"key": key, "digest": request_digest},
                ).first()
                if claimed is not None:
                    return None
                row = connection.execute(
                    text("SELECT digest, run_id FROM wfp_idempotency_keys WHERE key = :key"), {"key": key}
                ).first()
            if row is None:  # given back meanwhile: claim it again
                continue
            if row.digest != request_digest:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request; use a new key for a new request",
                )
            if row.run_id is not None:
                return row.run_id
            if time.monotonic() > deadline:
                raise ApiError(
                    409,
                    "idempotency_key_in_progress",
                    "a request with this Idempotency-Key is still being processed; retry it in a moment",
                )
            time.sleep(0.05)

    def record(self, key: str, run_id: str) -> None:
        with self._connect().begin() as connection:
            connection.execute(
                text("UPDATE wfp_idempotency_keys SET run_id = :run_id WHERE key = :key"),
                {"key": key, "run_id": run_id},
            )

    def release(self, key: str) -> None:
        with self._connect().begin() as connection:
            connection.execute(
                text("DELETE FROM wfp_idempotency_keys WHERE key = :key AND run_id IS NULL"), {"key": key}
            )
