"""Is the fraud stream flowing? One verdict on what its control bucket holds (resources/fraud_stream_control.py),
used by the `fraud_stream_health` sensor and by the `fraud_stream_is_flowing` check run on its own. No Dagster
here: the wrappers are in fraud_stream_asset.py.

It fails, with what an operator can do about it, when the supervisor has never reported or its heartbeat is older
than STALE_AFTER_S while the stream should run; when the stream failed, waits (for a model, a service) or is
stopped without having been asked to; and when transactions wait but none was scored for STALL_AFTER_S. A stream
stopped on purpose passes and says who stopped it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workflow_platform.plugins.fraud_stream import STALE_AFTER_S, START_THE_SUPERVISOR, heartbeat_age, utc
from workflow_platform.resources.fraud_stream_control import (
    BUCKET,
    Desired,
    Status,
    control_bucket,
    read_desired,
    read_status,
)

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from workflow_platform.resources.nats import NatsResource

STALL_AFTER_S = 60.0  # transactions waiting and none scored for this long: stalled
READ_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class StreamHealth:
    passed: bool
    description: str  # what is wrong and what to do, or how it runs
    metadata: dict[str, Any]  # the status's figures; empty when there is no status


def current_health(nats: NatsResource, now: dt.datetime | None = None) -> StreamHealth:
    """The verdict on the bucket's current `status` and `desired`; NATS unreachable is a failed verdict too."""
    from nats.errors import Error as NatsError

    async def read(_client: Client, js: JetStreamContext) -> tuple[Status | None, Desired | None]:
        bucket = await control_bucket(js)
        return await read_status(bucket), await read_desired(bucket)

    try:
        status, desired = nats.run(read, READ_TIMEOUT_S)
    except (OSError, TimeoutError, NatsError) as error:
        reason = str(error) or type(error).__name__
        return StreamHealth(False, f"cannot read the fraud stream's control bucket on NATS: {reason}", {})
    return evaluate(status, desired, now or dt.datetime.now(dt.UTC))


def evaluate(status: Status | None, desired: Desired | None, now: dt.datetime) -> StreamHealth:
    passed, description = _verdict(status, desired, now)
    return StreamHealth(passed, description, _metadata(status, desired, now) if status else {})


def _verdict(status: Status | None, desired: Desired | None, now: dt.datetime) -> tuple[bool, str]:
    if status is None:
        return False, (
            f"the fraud stream's supervisor is not running (it never wrote its status in the NATS bucket "
            f"{BUCKET}): {START_THE_SUPERVISOR}"
        )
    age = heartbeat_age(status, now)
    if desired is not None and desired.state == "stopped" and status.state == "stopped":
        stopped = (
            f"stopped on purpose by {desired.requested_by or 'an operator'} (command {desired.generation})"
        )
        if age > STALE_AFTER_S:  # nothing should run; but a start would wait for the supervisor
            stopped += f"; its supervisor is not running, a start waits for it: {START_THE_SUPERVISOR}"
        return True, stopped
    if age > STALE_AFTER_S:
        return False, (
            f"the fraud stream's supervisor is not running (its last heartbeat was {age:.0f} s ago, at "
            f"{utc(status.updated_at):%Y-%m-%d %H:%M:%S} UTC): {START_THE_SUPERVISOR}"
        )
    if status.state in ("failed", "waiting"):
        return (
            False,
            f"the fraud stream is {status.state}: {status.detail or 'its supervisor gave no detail'}",
        )
    if status.state == "stopped":
        return False, _stopped_while_it_should_run(status, desired)
    if status.lag and status.progress_at and _seconds_since(status.progress_at, now) > STALL_AFTER_S:
        return False, (
            f"stalled: {status.lag} transactions waiting, no progress since "
            f"{utc(status.progress_at):%Y-%m-%d %H:%M:%S} UTC ({_seconds_since(status.progress_at, now):.0f} s)"
        )
    return True, (
        f"running: {status.lag} transactions waiting, {status.rate_per_s:.0f} scored per second, model "
        f"{status.model_version or 'none loaded yet'}"
    )


def _stopped_while_it_should_run(status: Status, desired: Desired | None) -> str:
    if desired is None:
        return "the fraud stream is stopped, though no one asked it to stop: start it (fraud.startStream)"
    return (
        f"the fraud stream is stopped while {desired.requested_by or 'an operator'} asked it to run (command "
        f"{desired.generation}; its supervisor applied command {status.generation} last)"
    )


def _metadata(status: Status, desired: Desired | None, now: dt.datetime) -> dict[str, Any]:
    return {
        "state": status.state,
        "detail": status.detail,
        "lag": status.lag,
        "acknowledged_sequence": status.acknowledged_sequence,
        "delivered_sequence": status.delivered_sequence,
        "pending": status.pending,
        "unacknowledged": status.unacknowledged,
        "rate_per_s": status.rate_per_s,
        "model_version": status.model_version,
        "heartbeat_age_s": round(heartbeat_age(status, now), 1),
        "progress_at": status.progress_at.isoformat() if status.progress_at else None,
        "applied_generation": status.generation,
        "desired": _desired_text(desired),
    }


def _desired_text(desired: Desired | None) -> str:
    if desired is None:
        return "running (no command yet: the stream runs by default)"
    replay = f", replay from {desired.replay_from.isoformat()}" if desired.replay_from else ""
    return (
        f"{desired.state}{replay} (command {desired.generation} by {desired.requested_by or 'an operator'})"
    )


def _seconds_since(instant: dt.datetime, now: dt.datetime) -> float:
    return (now - utc(instant)).total_seconds()
