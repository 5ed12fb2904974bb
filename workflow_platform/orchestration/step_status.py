"""Dagster step events -> a workflow step's status, attempts, times and error: one reading for `wfp run`'s
progress and the API's executions."""

from __future__ import annotations

from dataclasses import dataclass

from dagster import DagsterEvent, DagsterEventType

# The events that say something about a step (STEP_OUTPUT carries its result, which the caller reads).
STEP_EVENTS = {
    DagsterEventType.STEP_START,
    DagsterEventType.STEP_RESTARTED,
    DagsterEventType.STEP_SUCCESS,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.STEP_UP_FOR_RETRY,
    DagsterEventType.STEP_OUTPUT,
    DagsterEventType.STEP_SKIPPED,
}


@dataclass
class StepStatus:
    status: str = "pending"  # pending | running | succeeded | failed | skipped
    attempts: int = 0
    started_at: float | None = None  # the first attempt's start, as the event log's timestamps
    ended_at: float | None = None
    duration_ms: float | None = None
    error: str | None = None  # the last failure's, or the one a retry follows


def apply_step_event(step: StepStatus, event: DagsterEvent, timestamp: float) -> None:
    """Update `step` with one of its events (others leave it as it is)."""
    kind = event.event_type
    if kind in (DagsterEventType.STEP_START, DagsterEventType.STEP_RESTARTED):
        step.attempts += 1
        step.status = "running"
        step.started_at = step.started_at or timestamp
    elif kind == DagsterEventType.STEP_SUCCESS:
        step.status = "succeeded"
        step.ended_at = timestamp
        step.duration_ms = round(event.event_specific_data.duration_ms, 1)
    elif kind == DagsterEventType.STEP_UP_FOR_RETRY:
        data = event.event_specific_data
        step.error = data.error.message.strip() if data.error else None
    elif kind == DagsterEventType.STEP_FAILURE:
        data = event.event_specific_data
        description = data.user_failure_data.description if data.user_failure_data else None
        step.status = "failed"
        step.ended_at = timestamp
        step.error = (description or (data.error.message if data.error else "failed")).strip()
    elif kind == DagsterEventType.STEP_SKIPPED:
        step.status = "skipped"
