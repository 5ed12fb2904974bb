"""The JetStream streams the pipeline reads and writes and its durable consumer, created if missing.

Named and shaped as the rest of the platform makes them: the transactions' stream as the replay creates it
(JetStream's default duplicate window), the alerts' as the nats plugin does for `fraud.alerts` (`fraud` and
`fraud.>`, a day's duplicate window: an alert's Nats-Msg-Id is remembered that long, so a restart that
publishes it again stores nothing).

The consumer is the pipeline's own, named (Pathway's auto-created one is named after the input's position
in the program, so two programs on one stream would share it): a pull consumer acknowledged message by
message, waiting longer than a checkpoint interval for an ack, with no cap on unacknowledged messages (the
reader acknowledges a checkpoint's worth at once).
"""

from __future__ import annotations

import asyncio

ALERTS_DUPLICATE_WINDOW_S = 24 * 3600
ACK_WAIT_S = 30  # after a kill, what the killed process had read and not acknowledged comes back this late


def ensure_streams(
    nats_url: str,
    input_stream: str,
    input_subject: str,
    alerts_stream: str,
    alerts_subject: str,
    consumer: str,
) -> None:
    streams = [(input_stream, input_subject, 0), (alerts_stream, alerts_subject, ALERTS_DUPLICATE_WINDOW_S)]
    asyncio.run(_ensure(nats_url, streams, input_stream, input_subject, consumer))


async def _ensure(
    nats_url: str, streams: list[tuple[str, str, float]], input_stream: str, input_subject: str, consumer: str
) -> None:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    client = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = client.jetstream()
        for name, subject, duplicate_window_s in streams:
            try:
                await js.stream_info(name)
            except NotFoundError:
                root = subject.split(".")[0]
                await js.add_stream(
                    name=name, subjects=[root, f"{root}.>"], duplicate_window=duplicate_window_s
                )
        try:
            await js.consumer_info(input_stream, consumer)
        except NotFoundError:
            config = ConsumerConfig(
                durable_name=consumer,
                filter_subject=input_subject,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ACK_WAIT_S,
                max_ack_pending=-1,
            )
            await js.add_consumer(input_stream, config)
    finally:
        await client.drain()
