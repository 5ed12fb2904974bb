from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psycopg2
from fastapi import Request

from workflow_platform.api.access import AccessPolicy
from workflow_platform.api.code_location import CodeLocationReloader
from workflow_platform.api.executions import RunEnds
from workflow_platform.api.idempotency import IdempotencyKeys
from workflow_platform.api.requests import MAX_BODY_BYTES
from workflow_platform.api.runs import RunSubmitter
from workflow_platform.instance.database import IDLE_PING_S
from workflow_platform.resources.postgres import PostgresResource
from workflow_platform.settings import ServiceSettings


@dataclass
class ApiConfig:
    instance: dg.DagsterInstance
    runs: RunSubmitter
    idempotency: IdempotencyKeys
    code_location: CodeLocationReloader
    submitted_dir: Path  # workflows registered through the API (one of WORKFLOWS_DIR's folders)
    plugins_file: Path  # registered HTTP plugins (WFP_PLUGINS_FILE)
    access: AccessPolicy = field(default_factory=AccessPolicy)  # no tokens: loopback only
    max_body: int = MAX_BODY_BYTES
    service_env: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    run_ends: RunEnds = field(init=False, repr=False)
    _preflight: PostgresResource | None = field(default=None, init=False, repr=False)
    _preflight_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _preflight_used: float = field(default=0.0, init=False, repr=False)  # time.monotonic() of its last check

    def __post_init__(self) -> None:
        self.run_ends = RunEnds(self.instance)

    @contextmanager
    def preflight_database(self) -> Iterator[PostgresResource]:
        """The services' PostgreSQL, for checking submitted workflows: one connection kept open, one check at a
        time (a new connection for every submission cost more than the check)."""
        with self._preflight_lock:
            if self._preflight is None:
                self._preflight = PostgresResource.from_settings(ServiceSettings())
            if time.monotonic() - self._preflight_used > IDLE_PING_S:
                try:  # the server may have restarted since the last check: reconnect rather than report its error
                    with self._preflight.transaction() as cursor:
                        cursor.execute("SELECT 1")
                except psycopg2.Error:
                    self._preflight.close()
            try:
                yield self._preflight
            finally:
                self._preflight_used = time.monotonic()


def config(request: Request) -> ApiConfig:
    return request.app.state.config
