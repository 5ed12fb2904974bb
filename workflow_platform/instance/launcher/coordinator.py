"""WarmRunCoordinator: Dagster's QueuedRunCoordinator (concurrency limits, priorities, the UI's queue) that also
wakes the run-queue daemon, so a run with free capacity starts at once instead of at the next dequeue interval.

    run_coordinator:
      module: workflow_platform.instance.launcher.coordinator
      class: WarmRunCoordinator
      config: {dequeue_interval_seconds: 1}   # the fallback when a wake-up is missed
"""

from __future__ import annotations

from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext
from dagster._core.storage.dagster_run import DagsterRun

from workflow_platform.instance.launcher.wakeup import notify_run_queue


class WarmRunCoordinator(QueuedRunCoordinator):
    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = super().submit_run(context)
        notify_run_queue(self._instance, f"queued:{run.run_id}")
        return run
