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
from workflow_platform.orchestration.step_status import STEP_EVENTS, StepStatus, apply_step_event
from workflow_platform.orchestration.workflow_run import WORKFLOW_TAG

FINISHED = (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


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
    steps: dict[str, StepStatus] = {}
    results: dict[str, Any] = {}
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
        step_id = step_ids.get(step_key, step_key)
        apply_step_event(steps.setdefault(step_id, StepStatus()), event, entry.timestamp)
        if event.event_type == DagsterEventType.STEP_OUTPUT:
            results[step_id] = _result(event.event_specific_data.metadata, results.get(step_id))
    shown = {step_id: _step(step, results.get(step_id)) for step_id, step in steps.items()}
    for step_id in step_ids.values():
        shown.setdefault(step_id, {"status": "skipped" if run.is_finished else "pending", "attempts": 0})
    return {**summary, "steps": shown, "events": events}


def _step(step: StepStatus, result: Any) -> dict[str, Any]:
    return {
        "status": step.status,
        "attempts": step.attempts,
        "startedAt": _iso(step.started_at),
        "endedAt": _iso(step.ended_at),
        "durationMs": step.duration_ms,
        "result": result,
        "error": step.error,
    }


def _result(metadata: dict[str, Any], previous: Any) -> Any:
    """A step's result as its output's metadata shows it (the previous output's if this one shows none)."""
    if "result" in metadata:
        return metadata["result"].value
    if "result_outline" in metadata:  # a long result with its long strings cut (orchestration/step.py)
        return {"preview": json.dumps(metadata["result_outline"].value)}
    if "result_preview" in metadata:
        return {"preview": metadata["result_preview"].value}
    return previous


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


def _iso(timestamp: Any) -> str | None:
    if timestamp is None:
        return None
    if isinstance(timestamp, int | float):
        from datetime import UTC, datetime

        return datetime.fromtimestamp(timestamp, UTC).isoformat()
    return timestamp.isoformat()
