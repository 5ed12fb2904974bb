"""The JetStream streams the pipeline reads and writes and its durable consumer, created if missing.

Created as the rest of the platform creates them (`resources.jetstream.ensure_stream`): the transactions'
stream as the replay does (JetStream's default duplicate window), the alerts' as the nats plugin does (a day's
duplicate window: an alert's Nats-Msg-Id is remembered that long, so a restart that publishes it again stores
nothing).

The delayed labels' stream is created as the alerts' (it is `FRAUD`, which holds `fraud.>`), and read by a
second durable consumer, rewound like the transactions': a replay delivers the labels published since its
transactions' start again (a label comes after its transaction).

The consumer is the pipeline's own, named (Pathway's auto-created one is named after the input's position
in the program, so two programs on one stream would share it): a pull consumer acknowledged message by
message, waiting longer than a checkpoint interval for an ack, with no cap on unacknowledged messages (the
reader acknowledges a checkpoint's worth at once).

At start the consumer is rewound to its ack floor: the messages a stopped (or killed) process had received
but not acknowledged would otherwise come back only after the ack wait, behind newer ones, and transactions
must reach the scorer in order (a transaction is featured on those before it). Everything at or below the
floor is in Pathway's snapshot, which the restarted pipeline replays first; a message both in the snapshot
and delivered again is remembered once and scored the same (see history.py), and its outputs are idempotent.

A replay (the supervisor's, with the checkpoints forgotten) recreates the consumer to deliver from a given
instant minus the windows' reach, by the messages' publication time: a transaction is published no earlier
than it happens, so every one at or after that instant in transaction time is delivered again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from workflow_platform.resources.jetstream import ensure_stream

from .history import KEEP_NS
from .options import StreamOptions

if TYPE_CHECKING:
    from nats.js import JetStreamContext

log = logging.getLogger(__name__)

ACK_WAIT_S = 30  # longer than any checkpoint interval: else messages come back while being processed


def ensure_streams(options: StreamOptions) -> None:
    """The streams and the consumer, rewound to its ack floor (see above): the pipeline does this at start."""
    asyncio.run(_ensure(options))


async def _ensure(options: StreamOptions) -> None:
    import nats

    client = await nats.connect(
        options.settings.require("nats_url"), connect_timeout=5, max_reconnect_attempts=3
    )
    try:
        await ensure(client.jetstream(), options)
    finally:
        await client.drain()


async def ensure(
    js: JetStreamContext, options: StreamOptions, replay_from: dt.datetime | None = None
) -> None:
    """The streams, created if missing, and the durable consumers (transactions, labels): rewound to their
    ack floor, or recreated to deliver from `replay_from` (with the history the windows reach)."""
    await ensure_stream(js, options.input_subject, options.input_stream, duplicate_window_s=0)
    await ensure_stream(js, options.alerts_subject, options.alerts_stream)
    await ensure_stream(js, options.rejected_subject, options.alerts_stream)
    await ensure_stream(js, options.feedback_subject, options.feedback_stream)
    await _rewound_consumer(js, options.input_stream, options.input_subject, options.consumer, replay_from)
    await _rewound_consumer(
        js, options.feedback_stream, options.feedback_subject, options.feedback_consumer, replay_from
    )


async def _rewound_consumer(
    js: Any, stream: str, subject: str, consumer: str, replay_from: dt.datetime | None = None
) -> None:
    """The durable consumer, created if missing, or recreated to deliver again after its ack floor, or from
    `replay_from` minus the windows' reach."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    start: dict[str, Any] = {"deliver_policy": DeliverPolicy.ALL}
    try:
        info = await js.consumer_info(stream, consumer)
    except NotFoundError:
        info = None
    if replay_from is not None:
        since = replay_from - dt.timedelta(microseconds=KEEP_NS // 1000)
        log.info("consumer %s: delivering again from %s (published since %s)", consumer, replay_from, since)
        start = {"deliver_policy": DeliverPolicy.BY_START_TIME, "opt_start_time": since}
    elif info is not None:
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        if info.delivered is None or info.delivered.stream_seq <= floor:
            return  # nothing delivered and left unacknowledged
        log.info("consumer %s: delivering again from stream sequence %d", consumer, floor + 1)
        start = {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": floor + 1}
    if info is not None:
        await js.delete_consumer(stream, consumer)
    config = ConsumerConfig(
        durable_name=consumer,
        filter_subject=subject,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT_S,
        max_ack_pending=-1,
        **start,
    )
    await js.add_consumer(stream, config)
