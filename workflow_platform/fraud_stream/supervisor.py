"""The supervisor: runs the pipeline as its child and obeys the control bucket (resources/fraud_stream_control.py).

Every HEARTBEAT_S it
  - applies a new command (a generation above the one applied, which its status keeps, so a restarted
    supervisor applies none twice): a replay stops the pipeline, forgets its checkpoints and rewinds the durable
    consumer (streams.py), and the pipeline then runs with --emit-from (persistence.py keeps that instant);
  - keeps the child as desired: started when it should run, a model is stored and no other pipeline holds the
    checkpoints; after a failure, restarted with backoff; stopped when it should not run (its messages wait in
    JetStream);
  - writes its status to the bucket and to a file (the container's health check, the embedded stack's
    readiness): the child, the model, the durable consumer's position and throughput.
A service down (NATS, the object store) is logged, reported as `waiting` and tried again the next beat: the
supervisor never exits on an outage. No Pathway here: the supervisor is light.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from workflow_platform.files import write_atomically
from workflow_platform.fraud import NO_MODEL, latest_version
from workflow_platform.resources.fraud_stream_control import (
    HEARTBEAT_S,
    Desired,
    Status,
    StatusState,
    StreamState,
    control_bucket,
    read_desired,
    read_status,
    write_status,
)
from workflow_platform.resources.s3_client import settings_client

from . import persistence, streams
from .child import Child
from .options import StreamOptions, to_argv

if TYPE_CHECKING:
    from minio import Minio
    from nats.aio.client import Client
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

log = logging.getLogger(__name__)

BACKOFF_MAX_S = 60.0
STABLE_S = 60.0  # a pipeline up this long has recovered: the next failure is retried quickly again


@dataclass
class Progress:
    """The ack floor's movement: the throughput, and when it last moved."""

    floor: int | None = None
    at: float | None = None  # monotonic
    progress_at: dt.datetime | None = None

    def update(self, floor: int, lag: int, now: dt.datetime) -> float:
        """Record the floor seen now; the rate since the last one, in acknowledged transactions per second."""
        moment = time.monotonic()
        rate = 0.0
        if self.floor is not None and self.at is not None and floor > self.floor:
            rate = (floor - self.floor) / max(moment - self.at, 1e-3)
        if floor != self.floor or lag == 0:
            self.progress_at = now
        self.floor, self.at = floor, moment
        return rate


class Supervisor:
    def __init__(self, options: StreamOptions, bucket: str, status_file: Path, log_level: str) -> None:
        self.options, self.bucket_name, self.status_file = options, bucket, status_file
        self.log_level = log_level
        self.child = Child()
        self.applied: int | None = None  # the last command applied; None until read back from the status
        self.wanted: StreamState | None = None  # None until the bucket has been read
        self.model_version: str | None = None
        self.progress = Progress()
        self.failures, self.retry_at, self.failure = 0, 0.0, ""
        self._store: Minio = settings_client(options.settings, retries=1, connect_timeout_s=3)
        self._client: Client | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        """Beat until `stopping` is set; then stop the pipeline cleanly and report it."""
        try:
            while not stopping.is_set():
                await self.beat()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), HEARTBEAT_S)
        finally:
            await self.child.stop()
            await self._final_status()
            if self._client is not None:
                with contextlib.suppress(Exception):
                    await self._client.close()

    async def beat(self) -> Status:
        try:
            js = await self._jetstream()
            bucket = await control_bucket(js, self.bucket_name)
            await self._obey(js, bucket)
            state, detail = await self._keep()
            status = await self._status(js, state, detail)
            await write_status(bucket, status)
        except Exception as exc:  # a service down: report it, try again next beat (the child runs on)
            log.warning("cannot reach a service, trying again in %.0f s: %s", HEARTBEAT_S, exc, exc_info=True)
            status = self._outage(f"a service is unreachable ({type(exc).__name__}: {exc})")
        write_atomically(self.status_file, status.model_dump_json() + "\n")
        return status

    async def _obey(self, js: JetStreamContext, bucket: KeyValue) -> None:
        if self.applied is None:
            previous = await read_status(bucket)
            self.applied = previous.generation if previous else 0
            if previous is not None:
                self.progress = Progress(previous.acknowledged_sequence, None, previous.progress_at)
        desired = await read_desired(bucket)
        if desired is not None and desired.generation > self.applied and await self._apply(js, desired):
            self.applied = desired.generation
        self.wanted = desired.state if desired else "running"  # no command yet: the stream runs

    async def _apply(self, js: JetStreamContext, desired: Desired) -> bool:
        """A command's one-off work (a replay); False if it cannot be done yet. Running or stopping: `_keep`."""
        log.info("applying command %d: %s", desired.generation, desired.model_dump_json())
        if desired.replay_from is None:
            return True
        replay_from = desired.replay_from
        if replay_from.tzinfo is None:  # an instant without an offset is UTC, as the transactions' times
            replay_from = replay_from.replace(tzinfo=dt.UTC)
        await self.child.stop()
        if persistence.in_use(self.options):
            return False  # a previous supervisor's pipeline still stops: next beat
        persistence.reset(self.options)
        await streams.ensure(js, self.options, replay_from)
        persistence.mark_replay(self.options, replay_from)
        return True

    async def _keep(self) -> tuple[StatusState, str]:
        """Start or stop the child as desired; the state and detail to report."""
        status = await self.child.exited()
        if status is not None:
            self._exited(status)
        self.model_version = await asyncio.to_thread(latest_version, self._store, self._bucket)
        if self.wanted != "running":
            await self.child.stop()
            return "stopped", ""
        if self.child.alive:
            if time.monotonic() - self.child.started_at > STABLE_S:
                self.failures = 0
            return "running", ""
        if time.monotonic() < self.retry_at:
            return "failed", self.failure
        if self.model_version is None:
            return "waiting", NO_MODEL
        if persistence.in_use(self.options):
            return "waiting", f"another pipeline still runs on {self.options.persistence_dir}: waiting for it"
        await self.child.start(self._argv())
        return "running", ""

    def _argv(self) -> list[str]:
        options = self.options
        replayed = persistence.replayed_from(options)
        if replayed is not None:
            options = replace(options, emit_from=replayed)
        return to_argv(options, self.log_level)

    def _exited(self, status: int) -> None:
        if status == 0:  # stopped by someone else's signal: started again, as desired
            log.info("the pipeline exited (status 0)")
            return
        self.failures += 1
        delay = min(BACKOFF_MAX_S, 2.0**self.failures)
        self.retry_at = time.monotonic() + delay
        self.failure = (
            f"the pipeline exited with status {status} (retrying in {delay:.0f} s):\n{self.child.tail}"
        )
        log.error("%s", self.failure)

    async def _status(self, js: JetStreamContext, state: StatusState, detail: str) -> Status:
        position = await self._position(js)
        now = dt.datetime.now(dt.UTC)
        lag = position["pending"] + position["unacknowledged"]
        rate = self.progress.update(position["acknowledged_sequence"], lag, now)
        return Status(
            updated_at=now,
            state=state,
            detail=detail,
            generation=self.applied or 0,
            pid=self.child.pid,
            model_version=self.model_version,
            rate_per_s=round(rate, 3),
            progress_at=self.progress.progress_at,
            **position,
        )

    async def _position(self, js: JetStreamContext) -> dict[str, int]:
        """The durable consumer's position in the transactions' stream (zeros before it exists)."""
        from nats.js.errors import NotFoundError

        try:
            info = await js.consumer_info(self.options.input_stream, self.options.consumer)
        except NotFoundError:
            return {"acknowledged_sequence": 0, "delivered_sequence": 0, "pending": 0, "unacknowledged": 0}
        return {
            "acknowledged_sequence": info.ack_floor.stream_seq if info.ack_floor else 0,
            "delivered_sequence": info.delivered.stream_seq if info.delivered else 0,
            "pending": info.num_pending or 0,
            "unacknowledged": info.num_ack_pending or 0,
        }

    def _outage(self, detail: str) -> Status:
        state: StatusState = (
            "running" if self.child.alive else "stopped" if self.wanted == "stopped" else "waiting"
        )
        return Status(
            updated_at=dt.datetime.now(dt.UTC),
            state=state,
            detail=detail,
            generation=self.applied or 0,
            pid=self.child.pid,
            model_version=self.model_version,
            acknowledged_sequence=self.progress.floor or 0,
            progress_at=self.progress.progress_at,
        )

    async def _final_status(self) -> None:
        """Stopped, with the generation applied: best effort (NATS may be the reason we stop)."""
        status = self._outage("the supervisor stopped").model_copy(update={"state": "stopped"})
        write_atomically(self.status_file, status.model_dump_json() + "\n")
        if self._client is not None and self._client.is_connected and self.applied is not None:
            with contextlib.suppress(Exception):
                js = self._client.jetstream()
                await write_status(await control_bucket(js, self.bucket_name), status)

    async def _jetstream(self) -> JetStreamContext:
        import nats

        if self._client is None or self._client.is_closed:
            self._client = await nats.connect(
                self.options.settings.require("nats_url"),
                connect_timeout=2,
                max_reconnect_attempts=3,
                reconnect_time_wait=1,
                error_cb=_quiet,  # the beat reports an outage, once per beat
            )
        return self._client.jetstream(timeout=5)

    @property
    def _bucket(self) -> str:
        return self.options.settings.s3_bucket


async def _quiet(error: Exception) -> None:
    log.debug("NATS: %s", error)
