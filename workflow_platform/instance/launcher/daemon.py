"""`wfp daemon`: Dagster's daemon (schedules, sensors, backfills, run queue, run monitoring, run retries), with
the run-queue daemon woken as soon as a run is queued or a warm worker's run ends.

Dagster's own `QueuedRunCoordinatorDaemon` decides what may start (max_concurrent_runs, tag limits, priorities);
this subclass only changes when it looks: at once on a wake-up, else every `dequeue_interval_seconds`. It also
starts the warm launcher's zygotes for the workspace's code locations, so the first run starts warm too. Plain
`dagster-daemon run` works with the same dagster.yaml; its queue is just polled on the interval.

Run retries (dagster.yaml's run_retries) find the failed run's job in the daemon's view of the code location.
A workflow submitted through the API a moment ago is not in it until the location reloads, so a run that failed
at once would lose its retry ("Could not find job"): `CurrentEventLogConsumerDaemon` waits until the daemon's view
has every workflow's job.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from threading import Event

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.workspace.context import IWorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.auto_run_reexecution.event_log_consumer import EventLogConsumerDaemon
from dagster._daemon.controller import create_daemons_from_instance, daemon_controller_from_instance
from dagster._daemon.daemon import DaemonIterator, DagsterDaemon, SpanMarker
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster._utils.error import serializable_error_info_from_exc_info
from dagster._utils.interrupts import capture_interrupts

from workflow_platform.instance.database import pool_storage_connections
from workflow_platform.instance.launcher.run_launcher import WarmRunLauncher
from workflow_platform.instance.launcher.wakeup import run_queue_wakeups
from workflow_platform.orchestration.catalog import load_workflows, workflows_dirs, workflows_fingerprint

HEARTBEAT_SLICE_S = 0.5  # the daemon thread yields this often so its heartbeat stays fresh
DAEMON_POOL_SIZE = 8


class WarmQueueDaemon(QueuedRunCoordinatorDaemon):
    def core_loop(
        self, workspace_process_context: IWorkspaceProcessContext, shutdown_event: Event
    ) -> DaemonIterator:
        instance = workspace_process_context.instance
        with run_queue_wakeups(instance) as wakeups:
            launcher = instance.run_launcher
            if isinstance(launcher, WarmRunLauncher):
                launcher.on_run_finished(wakeups.wake)
                _prewarm(launcher, workspace_process_context)
            while True:
                wakeups.drain()  # this dequeue sees everything queued so far
                yield SpanMarker.START_SPAN
                try:
                    # Dagster's pass reads every in-progress run first; with nothing queued (a wake-up for a run
                    # that ended, say) there is nothing to decide, and one query of ids says so.
                    if _any_queued(instance):
                        yield from self.run_iteration(workspace_process_context)
                except Exception:
                    error_info = serializable_error_info_from_exc_info(sys.exc_info())
                    self._logger.error("Caught error:\n%s", error_info)
                    yield error_info
                yield SpanMarker.END_SPAN
                deadline = time.monotonic() + self.interval_seconds
                while not shutdown_event.is_set() and (left := deadline - time.monotonic()) > 0:
                    if wakeups.wait(min(HEARTBEAT_SLICE_S, left)):
                        break
                    yield None
                yield None


def _any_queued(instance: DagsterInstance) -> bool:
    return bool(instance.get_run_ids(RunsFilter(statuses=[DagsterRunStatus.QUEUED]), limit=1))


class CurrentEventLogConsumerDaemon(EventLogConsumerDaemon):
    """Dagster's run retries (and run-status handling), once the daemon's view of the code location has every
    valid workflow file's job. The API reloads the code location after writing a file; until the daemon sees
    the new job it refreshes its view each iteration and holds back (the events wait in the log); if no reload
    came within RELOAD_AFTER_S (a file put in place by hand), it reloads the location itself."""

    RELOAD_AFTER_S = 15.0

    def __init__(self, interval_seconds: int) -> None:
        super().__init__(interval_seconds=interval_seconds)
        self._fingerprint: str | None = None
        self._jobs: set[str] = set()
        self._missing_since: float | None = None
        self._reloaded_for: str | None = None  # one reload per change of the files, never a loop

    def run_iteration(self, workspace_process_context: IWorkspaceProcessContext) -> DaemonIterator:
        current = workflows_fingerprint()
        if current != self._fingerprint:
            self._fingerprint = current
            self._jobs = set(load_workflows(workflows_dirs()).specs)
        waiting = self._reloaded_for != current and not self._has_every_job(workspace_process_context)
        if waiting:
            workspace_process_context.refresh_workspace()  # the code server may have reloaded meanwhile
            waiting = not self._has_every_job(workspace_process_context)
        if waiting:
            now = time.monotonic()
            self._missing_since = self._missing_since or now
            if now - self._missing_since < self.RELOAD_AFTER_S:
                yield None
                return
            for name in workspace_process_context.create_request_context().code_location_names:
                workspace_process_context.reload_code_location(name)
            self._reloaded_for = current
        self._missing_since = None
        yield from super().run_iteration(workspace_process_context)

    def _has_every_job(self, workspace_process_context: IWorkspaceProcessContext) -> bool:
        workspace = workspace_process_context.create_request_context()
        known = {
            job.name
            for location in workspace.code_locations
            for repository in location.get_repositories().values()
            for job in repository.get_all_jobs()
        }
        return self._jobs <= known


def _prewarm(launcher: WarmRunLauncher, workspace_process_context: IWorkspaceProcessContext) -> None:
    workspace = workspace_process_context.create_request_context()
    for location in workspace.code_locations:
        for repository in location.get_repositories().values():
            origin = repository.get_python_origin()
            launcher.prewarm(origin.code_pointer, origin.executable_path)


def warm_daemons(instance: DagsterInstance) -> Sequence[DagsterDaemon]:
    """Dagster's daemons for this instance, the run-queue one replaced by WarmQueueDaemon and the run-retry one
    by CurrentEventLogConsumerDaemon."""
    return [_replaced(daemon) for daemon in create_daemons_from_instance(instance)]


def _replaced(daemon: DagsterDaemon) -> DagsterDaemon:
    if isinstance(daemon, QueuedRunCoordinatorDaemon):
        return WarmQueueDaemon(interval_seconds=daemon.interval_seconds)
    if type(daemon) is EventLogConsumerDaemon:
        return CurrentEventLogConsumerDaemon(interval_seconds=int(daemon.interval_seconds))
    return daemon


def run_daemon(workspace_files: Sequence[str], log_level: str = "info") -> None:
    """What `dagster-daemon run -w ...` does, with warm_daemons. Returns on Ctrl-C / SIGTERM."""
    # SIGTERM (wfp up, docker stop) stops as cleanly as Ctrl-C: the pool lets runs finish or fails them.
    signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT))
    try:
        with capture_interrupts(), DagsterInstance.get() as instance:
            # The run queue, the pool and monitoring query the storage for every run, from a dozen threads.
            pool_storage_connections(instance, size=DAEMON_POOL_SIZE, name="wfp-daemon")
            controller = daemon_controller_from_instance(
                instance,
                workspace_load_target=WorkspaceFileTarget(paths=list(workspace_files)),
                gen_daemons=warm_daemons,
                log_level=log_level,
                code_server_log_level="warning",
            )
            with controller as running:
                running.check_daemon_loop()
    except KeyboardInterrupt:
        return
