"""Executions as the API shows them, read from the Dagster instance: runs, their steps and events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import OrderedDict
from typing import Any

import dagster as dg
from dagster import DagsterEventType, DagsterRunStatus, EventLogEntry, RunsFilter

from workflow_platform.api.catalog import CATALOG
from workflow_platform.instance.notifications import RUN_ENDS, Notifications
from workflow_platform.language.spec import dagster_name
from workflow_platform.orchestration.workflow_run import WORKFLOW_TAG

FINISHED = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)
STEP_EVENTS = {
    DagsterEventType.STEP_START,
    DagsterEventType.STEP_RESTARTED,
    DagsterEventType.STEP_SUCCESS,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.STEP_UP_FOR_RETRY,
    DagsterEventType.STEP_OUTPUT,
    DagsterEventType.STEP_SKIPPED,
}


class EventLogCache:
    """The event log entries of recently read runs. Clients poll an execution while it runs: each read fetches
    only the events recorded since the previous one instead of the whole log again."""

    def __init__(self, runs: int = 512) -> None:
        self._runs = runs
        self._lock = threading.Lock()
        self._logs: OrderedDict[str, tuple[str | None, list[EventLogEntry]]] = OrderedDict()

    def entries(self, instance: dg.DagsterInstance, run_id: str) -> list[EventLogEntry]:
        with self._lock:  # one reader per run at a time keeps the cursor and the entries together
            cursor, entries = self._logs.pop(run_id, (None, []))
            new = instance.get_records_for_run(run_id, cursor=cursor)
            entries = [*entries, *(record.event_log_entry for record in new.records)]
            self._logs[run_id] = (new.cursor if new.records else cursor, entries)
            while len(self._logs) > self._runs:
                self._logs.popitem(last=False)
            return entries


EVENTS = EventLogCache()


class RunEnds:
    """Waiting for runs to end without clients polling them. One thread listens for the notification a run's
    end sends (workflow_platform/instance/storage.py) and wakes that run's waiters. It also asks the storage
    which awaited runs have finished when a waiter arrives (its run may have ended just before) and every
    `fallback_s` (a notification missed while reconnecting)."""

    def __init__(self, instance: dg.DagsterInstance, fallback_s: float = 1.0) -> None:
        self._instance = instance
        self._fallback_s = fallback_s
        self._lock = threading.Lock()
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._notifications: Notifications | None = None
        self._look = True

    async def wait(self, run_id: str, timeout: float) -> None:
        """Return when the run has finished, or after `timeout` seconds."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(run_id, []).append(waiter)
            self._look = True
            if self._notifications is None:
                self._notifications = Notifications(self._instance, RUN_ENDS)
                threading.Thread(
                    target=self._watch, args=(self._notifications,), name="wfp-run-ends", daemon=True
                ).start()
        self._notifications.wake()
        try:
            await asyncio.wait_for(waiter[1].wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                waiting = self._waiters.get(run_id, [])
                if waiter in waiting:
                    waiting.remove(waiter)
                if not waiting:
                    self._waiters.pop(run_id, None)

    def _watch(self, notifications: Notifications) -> None:
        looked = 0.0
        while True:
            ended = set(notifications.take())
            with self._lock:
                look, self._look = self._look, False
                run_ids = list(self._waiters)
            if run_ids and (look or time.monotonic() - looked >= self._fallback_s):
                looked = time.monotonic()
                # The storage unreachable: the waiters time out and get the run as it is.
                with contextlib.suppress(Exception):
                    finished = RunsFilter(run_ids=run_ids, statuses=list(FINISHED))
                    ended.update(self._instance.get_run_ids(finished))
            with self._lock:
                for run_id in ended:
                    for loop, event in self._waiters.pop(run_id, []):
                        loop.call_soon_threadsafe(event.set)
            notifications.wait(self._fallback_s)


def run_status(run: dg.DagsterRun) -> str:
    return run.status.value


def step_ids_for(workflow: str | None) -> dict[str, str]:
    """Dagster step keys -> workflow step ids, from the workflow file (a key is the id with '-' as '_')."""
    known = CATALOG.specs().get(workflow) if workflow else None
    return {dagster_name(s.id): s.id for s in known[0].steps} if known else {}


def describe_run(instance: dg.DagsterInstance, record: Any, with_events: bool = True) -> dict[str, Any]:
    run = record.dagster_run
    workflow = run.tags.get(WORKFLOW_TAG)
    summary = {
        "executionId": run.run_id,
        "workflowId": workflow,
        "job": run.job_name,
        "status": run_status(run),
        "createdAt": record.create_timestamp.isoformat(),
        "startedAt": _iso(record.start_time),
        "endedAt": _iso(record.end_time),
        "tags": {k: v for k, v in run.tags.items() if not k.startswith(".dagster")},
    }
    if not with_events:
        return summary
    step_ids = step_ids_for(workflow)
    steps: dict[str, dict[str, Any]] = {}
    events = []
    for entry in EVENTS.entries(instance, run.run_id):
        event = entry.dagster_event
        step_key = event.step_key if event else None
        events.append(
            {
                "timestamp": _iso(entry.timestamp),
                "type": event.event_type.name if event else "LOG",
                "step": step_ids.get(step_key, step_key) if step_key else None,
                "message": _message(entry),
            }
        )
        if event is None or step_key is None or event.event_type not in STEP_EVENTS:
            continue
        step = steps.setdefault(
            step_ids.get(step_key, step_key),
            {
                "status": "pending",
                "attempts": 0,
                "startedAt": None,
                "endedAt": None,
                "durationMs": None,
                "result": None,
                "error": None,
            },
        )
        _apply(step, event, entry.timestamp)
    for step_id in step_ids.values():
        steps.setdefault(step_id, {"status": "skipped" if run.is_finished else "pending", "attempts": 0})
    return {**summary, "steps": steps, "events": events}


def _message(entry: EventLogEntry) -> str:
    """The event's message; for an engine event that carries an error (the run could not start, a worker
    died), the error too: "Could not load job definition." alone does not say why."""
    event = entry.dagster_event
    message = entry.user_message or (event.message if event else "") or ""
    if event is not None and event.event_type == DagsterEventType.ENGINE_EVENT:
        error = event.engine_event_data.error
        if error is not None:
            message = f"{message} {error.message.strip()}"
    return message


def _apply(step: dict[str, Any], event: Any, timestamp: float) -> None:
    kind = event.event_type
    if kind in (DagsterEventType.STEP_START, DagsterEventType.STEP_RESTARTED):
        step["attempts"] += 1
        step["status"] = "running"
        step["startedAt"] = step["startedAt"] or _iso(timestamp)
    elif kind == DagsterEventType.STEP_OUTPUT:
        metadata = event.event_specific_data.metadata
        if "result" in metadata:
            step["result"] = metadata["result"].value
        elif "result_outline" in metadata:  # a long result with its long strings cut (orchestration/step.py)
            step["result"] = {"preview": json.dumps(metadata["result_outline"].value)}
        elif "result_preview" in metadata:
            step["result"] = {"preview": metadata["result_preview"].value}
    elif kind == DagsterEventType.STEP_SUCCESS:
        step["status"] = "succeeded"
        step["endedAt"] = _iso(timestamp)
        step["durationMs"] = round(event.event_specific_data.duration_ms, 1)
    elif kind == DagsterEventType.STEP_UP_FOR_RETRY:
        data = event.event_specific_data
        step["error"] = data.error.message.strip() if data.error else None
    elif kind == DagsterEventType.STEP_FAILURE:
        data = event.event_specific_data
        description = data.user_failure_data.description if data.user_failure_data else None
        step["status"] = "failed"
        step["endedAt"] = _iso(timestamp)
        step["error"] = (description or (data.error.message if data.error else "failed")).strip()
    elif kind == DagsterEventType.STEP_SKIPPED:
        step["status"] = "skipped"


def _iso(timestamp: Any) -> str | None:
    if timestamp is None:
        return None
    if isinstance(timestamp, int | float):
        from datetime import UTC, datetime

        return datetime.fromtimestamp(timestamp, UTC).isoformat()
    return timestamp.isoformat()
