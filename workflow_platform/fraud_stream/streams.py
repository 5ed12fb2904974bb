"""The JetStream streams the pipeline reads and writes and its durable consumer, created if missing.

Created as the rest of the platform creates them (`resources.jetstream.ensure_stream`): the transactions'
stream as the replay does (JetStream's default duplicate window), the alerts' as the nats plugin does (a day's
duplicate window: an alert's Nats-Msg-Id is remembered that long, so a restart that publishes it again stores
nothing).

The delayed labels' stream is created as the alerts' (it is `FRAUD`, which holds `fraud.>`), and read by a
second durable consumer, like the transactions'.

The consumer is the pipeline's own, named (Pathway's auto-created one is named after the input's position
in the program, so two programs on one stream would share it): a pull consumer acknowledged message by
message, waiting longer than a checkpoint interval for an ack, with no cap on unacknowledged messages (the
reader acknowledges a checkpoint's worth at once).

At start the consumer is rewound to its ack floor: the messages a stopped (or killed) process had received
but not acknowledged would otherwise come back only after the ack wait, behind newer ones, and transactions
must reach the scorer in order (a transaction is featured on those before it). Everything at or below the
floor is in Pathway's snapshot, which the restarted pipeline replays first; a message both in the snapshot
and delivered again is remembered once and scored the same (see history.py), and its outputs are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from workflow_platform.resources.jetstream import ensure_stream

log = logging.getLogger(__name__)

ACK_WAIT_S = 30  # longer than any checkpoint interval: else messages come back while being processed


def ensure_streams(
    nats_url: str,
    input_stream: str,
    input_subject: str,
    alerts_stream: str,
    alerts_subject: str,
    consumer: str,
    feedback: tuple[str, str, str],
) -> None:
    """`feedback`: the delayed labels' (stream, subject, durable consumer), created and rewound likewise."""
    asyncio.run(
        _ensure(nats_url, input_stream, input_subject, alerts_stream, alerts_subject, consumer, feedback)
    )


async def _ensure(
    nats_url: str,
    input_stream: str,
    input_subject: str,
    alerts_stream: str,
    alerts_subject: str,
    consumer: str,
    feedback: tuple[str, str, str],
) -> None:
    import nats

    client = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = client.jetstream()
        await ensure_stream(js, input_subject, input_stream, duplicate_window_s=0)
        await ensure_stream(js, alerts_subject, alerts_stream)
        await _rewound_consumer(js, input_stream, input_subject, consumer)
        feedback_stream, feedback_subject, feedback_consumer = feedback
        await ensure_stream(js, feedback_subject, feedback_stream)
        await _rewound_consumer(js, feedback_stream, feedback_subject, feedback_consumer)
    finally:
        await client.drain()


async def _rewound_consumer(js: Any, stream: str, subject: str, consumer: str) -> None:
    """The durable consumer, created if missing, or recreated to deliver again after its ack floor."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    start: dict[str, Any] = {"deliver_policy": DeliverPolicy.ALL}
    try:
        info = await js.consumer_info(stream, consumer)
    except NotFoundError:
        info = None
    if info is not None:
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        if info.delivered is None or info.delivered.stream_seq <= floor:
            return  # nothing delivered and left unacknowledged
        log.info("consumer %s: delivering again from stream sequence %d", consumer, floor + 1)
        await js.delete_consumer(stream, consumer)
        start = {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": floor + 1}
    config = ConsumerConfig(
        durable_name=consumer,
        filter_subject=subject,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT_S,
        max_ack_pending=-1,
        **start,
    )
    await js.add_consumer(stream, config)
