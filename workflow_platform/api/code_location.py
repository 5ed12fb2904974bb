"""Keeping the Dagster code location (what the UI and the daemon's schedules and sensors see) in step with the
workflow files the API writes, by reloading it through the webserver's GraphQL.

A reload starts a new code server process (seconds of CPU). With the warm launcher a run does not need it (the
API creates the run from the workflow file, the worker builds the job itself), so the reload happens in the
background; Dagster's default launcher starts runs in the code server, so there the submission waits for it.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dagster_graphql import DagsterGraphQLClient

log = logging.getLogger("workflow_platform.api")

LOCATION = "workflows"  # workspace.yaml's location_name
# File timestamps come from the kernel's coarse clock, a few milliseconds behind time.time().
CLOCK_SLACK_S = 0.05


class DagsterUnavailable(Exception):
    pass


@dataclass
class CodeLocationReloader:
    webserver_host: str
    webserver_port: int
    # Dagster's default launcher: a run's job must be in the code location first.
    runs_need_code_server: bool
    # The operator's credentials, when the UI needs them.
    headers: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _reloaded_from: float = field(default=0.0, init=False, repr=False)  # start of the last good reload
    _loaded: dict[Path, float] = field(default_factory=dict, init=False, repr=False)  # file -> mtime reloaded
    _background: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="wfp-reload"), init=False, repr=False
    )

    def publish(self, path: Path) -> None:
        """Make the code location show `path` as it is on disk now: before returning if runs need it, else soon."""
        if self.runs_need_code_server:
            self.ensure_loaded(path)
        else:
            self._background.submit(self._ensure_loaded_logged, path)

    def _ensure_loaded_logged(self, path: Path) -> None:
        try:
            self.ensure_loaded(path)
        except DagsterUnavailable as error:
            log.warning("the Dagster UI may not show %s yet: %s", path, error)

    def ensure_loaded(self, path: Path) -> None:
        """Reload the code location unless it already has `path` as it is on disk now. Submissions that arrive
        together share one reload (a reload that began after a file was written has it)."""
        with self._lock:
            written = path.stat().st_mtime
            if self._loaded.get(path) == written or written < self._reloaded_from - CLOCK_SLACK_S:
                return
            started = time.time()
            self._reload()
            self._reloaded_from = started
            self._loaded[path] = written

    def _reload(self) -> None:
        try:
            client = DagsterGraphQLClient(
                self.webserver_host, port_number=self.webserver_port, headers=self.headers, timeout=60
            )
            info = client.reload_repository_location(LOCATION)
        except Exception as error:  # the client also queries the server when it is created
            raise DagsterUnavailable(f"reloading the code location failed: {error}") from None
        if info.status.value != "SUCCESS":
            raise DagsterUnavailable(f"reloading the code location failed: {info.message}")
