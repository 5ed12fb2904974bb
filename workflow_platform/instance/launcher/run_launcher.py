"""WarmRunLauncher: Dagster's RunLauncher extension point, backed by the warm worker pool (`pool.py`).

Configured in dagster.yaml:

    run_launcher:
      module: workflow_platform.instance.launcher.run_launcher
      class: WarmRunLauncher
      config: {idle_workers: 2, recycle_after_runs: 1000, max_zygote_rss_mb: 2048}

The pool lives in the process that launches runs (the daemon, which dequeues them); other processes that load the
instance (webserver, API, the workers themselves) never start one. Termination works from any process: the run
is marked CANCELING and the pool interrupts its worker. Worker health (for run monitoring) comes from the pool,
or, for a run another pool started (before a daemon restart), from the worker's pid recorded in a run tag.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

import psutil
from dagster import Field, IntSource
from dagster import _check as check
from dagster._core.code_pointer import CodePointer
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._serdes import ConfigurableClass, ConfigurableClassData

from workflow_platform.instance.launcher.pool import PoolSettings, WorkerPool
from workflow_platform.instance.launcher.worker import WORKER_TAG


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    """Runs each run in a single-use worker forked from a process that has imported Dagster and the code location."""

    def __init__(
        self,
        inst_data: ConfigurableClassData | None = None,
        idle_workers: int = PoolSettings.idle_workers,
        recycle_after_runs: int = PoolSettings.recycle_after_runs,
        max_zygote_rss_mb: int = PoolSettings.max_zygote_rss_mb,
        preload_modules: Sequence[str] = (),
    ) -> None:
        self._inst_data = inst_data
        self._settings = PoolSettings(
            idle_workers=idle_workers,
            recycle_after_runs=recycle_after_runs,
            max_zygote_rss_mb=max_zygote_rss_mb,
            preload_modules=tuple(preload_modules),
        )
        self._pool: WorkerPool | None = None
        self._pool_lock = threading.Lock()
        self._run_finished_callbacks: list[Callable[[], None]] = []
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "idle_workers": Field(
                IntSource,
                is_required=False,
                default_value=PoolSettings.idle_workers,
                description="workers forked ahead of time, waiting for a run",
            ),
            "recycle_after_runs": Field(
                IntSource,
                is_required=False,
                default_value=PoolSettings.recycle_after_runs,
                description="replace a code location's zygote after this many runs",
            ),
            "max_zygote_rss_mb": Field(
                IntSource,
                is_required=False,
                default_value=PoolSettings.max_zygote_rss_mb,
                description="replace a zygote whose resident memory grows above this",
            ),
            "preload_modules": Field(
                [str],
                is_required=False,
                default_value=[],
                description="modules the zygote imports before forking (clients steps import lazily)",
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        return cls(inst_data=inst_data, **config_value)

    # -- the pool ------------------------------------------------------------------------------------------
    def pool(self) -> WorkerPool:
        with self._pool_lock:
            if self._pool is None:
                self._pool = WorkerPool(self._instance, self._settings, self._run_finished)
            return self._pool

    def on_run_finished(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever a worker's run ends (the run queue can start the next one)."""
        self._run_finished_callbacks.append(callback)

    def _run_finished(self) -> None:
        for callback in self._run_finished_callbacks:
            callback()

    def prewarm(self, pointer: CodePointer, executable: str | None = None) -> None:
        """Start a code location's zygote before its first run."""
        self.pool().prewarm(pointer, executable)

    # -- RunLauncher ---------------------------------------------------------------------------------------
    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = check.not_none(
            run.job_code_origin, f"run {run.run_id} has no code origin to load its job from"
        )
        repository = origin.repository_origin
        # The worker tags the run with where it runs (worker.WORKER_TAG) before it starts it.
        self.pool().launch(run.run_id, repository.code_pointer, repository.executable_path)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        self._instance.report_run_canceling(run)  # the pool interrupts the worker within a second
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        state = self._pool.worker_state(run.run_id) if self._pool else None
        if state is not None:
            kind, value = state
            if kind == "running":
                return CheckRunHealthResult(WorkerStatus.RUNNING)
            return CheckRunHealthResult(WorkerStatus.FAILED, f"the run worker exited with code {value}")
        return _health_from_tag(run.tags.get(WORKER_TAG))

    def dispose(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown()


def _health_from_tag(tag: str | None) -> CheckRunHealthResult:
    """A worker another pool started (before a daemon restart): alive if its pid is the same process."""
    if not tag:
        return CheckRunHealthResult(WorkerStatus.FAILED, "no run worker was recorded for this run")
    worker = json.loads(tag)
    if worker["host"] != socket.gethostname():
        return CheckRunHealthResult(WorkerStatus.UNKNOWN, f"the run worker is on host {worker['host']}")
    try:
        alive = psutil.Process(worker["pid"]).create_time() == worker["created"]
    except psutil.Error:
        alive = False
    if alive:
        return CheckRunHealthResult(WorkerStatus.RUNNING)
    return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker pid {worker['pid']} is gone")
