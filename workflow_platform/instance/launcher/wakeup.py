"""Wake the run-queue daemon as soon as a run is queued, from any process: `NOTIFY wfp_run_queue` on the
instance's PostgreSQL (workflow_platform/instance/notifications.py), sent by the coordinator (webserver, API, the daemon's
own sensors and schedules) and listened to by the daemon. Without PostgreSQL storage nothing is sent and the
daemon falls back to its dequeue interval.
"""

from __future__ import annotations

from dagster import DagsterInstance

from workflow_platform.instance.notifications import RUN_QUEUE, Notifications, notify


def notify_run_queue(instance: DagsterInstance, payload: str) -> None:
    notify(instance, RUN_QUEUE, payload)


def run_queue_wakeups(instance: DagsterInstance) -> Notifications:
    return Notifications(instance, RUN_QUEUE)
