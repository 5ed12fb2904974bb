"""The fraud plugin's stream actions: `startStream`, `stopStream`, `replayStream {from}`. Each writes the next
command into the fraud stream's control bucket (resources/fraud_stream_control.py, requested by the run) and
waits until the supervisor reports it applied: its status at that command's generation or later, in the state
asked for. A step fails at once when the stream failed or a later command replaced this one, and after
`timeoutSeconds` when the supervisor is down or still waiting; a command not applied stays in the bucket and is
applied when the supervisor comes back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING, Any

from pydantic import AwareDatetime, Field

from workflow_platform.language.actions import Action, ActionInput, ActionOutput, StepContext
from workflow_platform.resources.fraud_stream_control import (
    HEARTBEAT_S,
    Desired,
    Status,
    StreamState,
    command,
    control_bucket,
    read_status,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from workflow_platform.resources.nats import NatsResource

POLL_S = 0.25
STALE_AFTER_S = 3 * HEARTBEAT_S  # no heartbeat for this long: the supervisor is down
START_THE_SUPERVISOR = "`wfp up` starts it, or the fraud-stream service in docker-compose"


class CommandNotApplied(Exception):
    """The supervisor did not apply the command: it is down, still waiting, failed, or applied a later one.
    A service's state, not the input's: the step's retry policy applies (a retry writes the command again)."""


class StreamCommandInput(ActionInput):
    timeoutSeconds: float = Field(
        60, gt=0, le=3600, description="How long to wait for the stream's supervisor to apply the command."
    )


class ReplayStreamInput(StreamCommandInput):
    from_: AwareDatetime = Field(
        alias="from",
        description="Re-score the transactions from this instant on (ISO 8601 with its offset, e.g. "
        "2025-11-03T00:00:00Z); the history before it is read again for the windows, not re-scored.",
    )


def start_stream(_store: Any, spec: StreamCommandInput, ctx: StepContext) -> ActionOutput:
    return _apply(ctx, "running", None, spec.timeoutSeconds)


def stop_stream(_store: Any, spec: StreamCommandInput, ctx: StepContext) -> ActionOutput:
    return _apply(ctx, "stopped", None, spec.timeoutSeconds)


def replay_stream(_store: Any, spec: ReplayStreamInput, ctx: StepContext) -> ActionOutput:
    return _apply(ctx, "running", spec.from_, spec.timeoutSeconds)


def _apply(
    ctx: StepContext, state: StreamState, replay_from: dt.datetime | None, timeout_s: float
) -> ActionOutput:
    nats: NatsResource = ctx.resources["nats"]

    async def work(_client: Client, js: JetStreamContext) -> tuple[Desired, Status | None]:
        bucket = await control_bucket(js)
        desired = await command(bucket, state, replay_from, requested_by=ctx.run_id)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            status = await read_status(bucket)
            if _settled(status, desired) or asyncio.get_running_loop().time() >= deadline:
                return desired, status
            await asyncio.sleep(POLL_S)

    desired, status = nats.run(work, ctx.timeout_s)
    if status is None or status.generation < desired.generation or status.state != desired.state:
        raise CommandNotApplied(_not_applied(desired, status, timeout_s))
    result = {"command": desired.model_dump(mode="json"), "status": _status_json(status)}
    return ActionOutput(result)


def _settled(status: Status | None, desired: Desired) -> bool:
    """Applied as asked, or never going to be: the stream failed, or a later command was applied instead."""
    if status is None or status.generation < desired.generation:
        return False
    return status.state in (desired.state, "failed") or status.generation > desired.generation


def _not_applied(desired: Desired, status: Status | None, timeout_s: float) -> str:
    asked = f"command {desired.generation} ({_command_text(desired)})"
    if status is None:
        return (
            f"the fraud stream's supervisor is not running (it never reported): {asked} waits in the bucket "
            f"and is applied when it starts; {START_THE_SUPERVISOR}"
        )
    age = heartbeat_age(status, dt.datetime.now(dt.UTC))
    if age > STALE_AFTER_S:
        return (
            f"the fraud stream's supervisor is not running (last heartbeat {age:.0f} s ago): {asked} waits in "
            f"the bucket and is applied when it starts; {START_THE_SUPERVISOR}"
        )
    if status.generation > desired.generation:
        return f"{asked} was replaced by command {status.generation}: the stream is {status.state} now"
    if status.state == "failed":
        return f"the fraud stream failed applying {asked}: {status.detail}"
    return (
        f"{asked} not applied after {timeout_s:g} s: the stream is {status.state} at command "
        f"{status.generation}" + (f": {status.detail}" if status.detail else "")
    )


def heartbeat_age(status: Status, now: dt.datetime) -> float:
    """Seconds since the supervisor wrote `status` (an instant written without offset is taken as UTC)."""
    return (now - utc(status.updated_at)).total_seconds()


def utc(instant: dt.datetime) -> dt.datetime:
    return instant.astimezone(dt.UTC) if instant.tzinfo else instant.replace(tzinfo=dt.UTC)


def _command_text(desired: Desired) -> str:
    if desired.replay_from:
        return f"replay from {desired.replay_from.isoformat()}"
    return "start" if desired.state == "running" else "stop"


def _status_json(status: Status) -> dict[str, Any]:
    return {**status.model_dump(mode="json"), "lag": status.lag}


STREAM_ACTIONS = (
    Action(
        "startStream",
        StreamCommandInput,
        start_stream,
        "Start the real-time fraud stream (python -m workflow_platform.fraud_stream) and wait until it runs.",
        ("nats",),
    ),
    Action(
        "stopStream",
        StreamCommandInput,
        stop_stream,
        "Stop the real-time fraud stream and wait until it stopped; transactions wait in JetStream meanwhile.",
        ("nats",),
    ),
    Action(
        "replayStream",
        ReplayStreamInput,
        replay_stream,
        "Re-score the transactions from an instant on with the real-time fraud stream, and wait until it runs.",
        ("nats",),
    ),
)
