"""How the platform operates the streaming fraud pipeline: two keys of a NATS JetStream key-value bucket.

    desired  written by whoever operates the stream (a workflow step: the fraud plugin's stream actions):
             run it, stop it, or re-score from an instant. Every command has the next `generation`.
    status   written every few seconds by the stream's supervisor (`python -m workflow_platform.fraud_stream`):
             what it runs, the last command it applied, the JetStream consumer's position, its throughput.

The bucket is the only channel between them, so it works wherever both reach NATS (one host, compose, k8s):
a command waits in the bucket while the supervisor is down and is applied when it comes back. No Dagster here:
the supervisor uses it outside any run; the Dagster sensor and the plugin actions read and write the same keys.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Literal, TypeVar

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

BUCKET = "fraud_stream"
DESIRED_KEY = "desired"
STATUS_KEY = "status"
HEARTBEAT_S = 5.0  # how often the supervisor writes its status

StreamState = Literal["running", "stopped"]  # what a command asks for
StatusState = Literal["running", "stopped", "waiting", "failed"]  # waiting: for a model, or for a service
_Model = TypeVar("_Model", bound=BaseModel)


class Desired(BaseModel):
    """What the stream should be doing; the supervisor applies each generation once."""

    generation: int = Field(ge=1)
    state: StreamState
    # Re-score the transactions from this instant on (their windows' history before it is read again, not
    # re-scored); None: go on from where the durable consumer is.
    replay_from: dt.datetime | None = None
    requested_by: str = ""  # who asked: a run id, a user


class Status(BaseModel):
    """What the supervisor last saw. `updated_at` is its heartbeat: older than a few HEARTBEAT_S, it is down."""

    updated_at: dt.datetime
    state: StatusState
    detail: str = ""  # why it waits or failed, in words an operator can act on
    generation: int = 0  # the last command applied (0: none yet, the stream runs by default)
    pid: int | None = None  # the pipeline's process while it runs
    model_version: str | None = None
    # The durable consumer's position in the transactions' stream: acknowledged = scored and checkpointed.
    acknowledged_sequence: int = 0
    delivered_sequence: int = 0
    pending: int = 0  # in the stream, not delivered yet
    unacknowledged: int = 0  # delivered, not checkpointed yet
    rate_per_s: float = 0.0  # acknowledged transactions per second over the last heartbeat
    progress_at: dt.datetime | None = None  # when the acknowledged sequence last moved

    @property
    def lag(self) -> int:
        """Transactions in the stream not scored and checkpointed yet."""
        return self.pending + self.unacknowledged


async def control_bucket(js: JetStreamContext, name: str = BUCKET) -> KeyValue:
    """The bucket, created if missing (one value per key: only the latest command and status matter). Another
    `name`: a second stream's control (tests run their own supervisors side by side)."""
    from nats.js.errors import BucketNotFoundError

    try:
        return await js.key_value(name)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=name, history=1, description="the fraud stream's control")


async def read_desired(bucket: KeyValue) -> Desired | None:
    return await _read(bucket, DESIRED_KEY, Desired)


async def read_status(bucket: KeyValue) -> Status | None:
    return await _read(bucket, STATUS_KEY, Status)


async def write_status(bucket: KeyValue, status: Status) -> None:
    await bucket.put(STATUS_KEY, status.model_dump_json().encode())


async def command(
    bucket: KeyValue, state: StreamState, replay_from: dt.datetime | None = None, requested_by: str = ""
) -> Desired:
    """Write the next command; two operators at once each get their own generation (compare-and-set)."""
    from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError

    while True:
        try:
            entry = await bucket.get(DESIRED_KEY)
            current, revision = Desired.model_validate_json(entry.value or b"{}"), entry.revision
        except (KeyNotFoundError, KeyDeletedError) as missing:
            # A deleted or purged key keeps its marker's revision: the update must name it, or it never lands.
            current, revision = None, missing.entry.revision if missing.entry else 0
        # After the key was deleted, generations go on from the last one the supervisor applied.
        applied = await read_status(bucket)
        desired = Desired(
            generation=max(current.generation if current else 0, applied.generation if applied else 0) + 1,
            state=state,
            replay_from=replay_from,
            requested_by=requested_by,
        )
        try:
            await bucket.update(DESIRED_KEY, desired.model_dump_json().encode(), last=revision)
            return desired
        except KeyWrongLastSequenceError:
            continue  # someone else's command landed first: ours goes after it


async def _read(bucket: KeyValue, key: str, model: type[_Model]) -> _Model | None:
    from nats.js.errors import KeyDeletedError, KeyNotFoundError

    try:
        entry = await bucket.get(key)
    except (KeyNotFoundError, KeyDeletedError):
        return None
    return model.model_validate_json(entry.value) if entry.value else None
