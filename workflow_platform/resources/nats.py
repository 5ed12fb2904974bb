from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import dagster as dg

if TYPE_CHECKING:  # nats-py (with aiohttp) costs ~0.3 s to import: only runs that publish pay it
    from nats.aio.client import Client
    from nats.js import JetStreamContext

T = TypeVar("T")


class NatsResource(dg.ConfigurableResource):
    """NATS with JetStream through nats-py. Each call opens a connection, runs, and drains it."""

    url: str
    connect_timeout_s: float = 5.0

    def run(
        self, work: Callable[[Client, JetStreamContext], Awaitable[T]], timeout_s: float | None = None
    ) -> T:
        import nats

        async def session() -> T:
            client = await nats.connect(
                self.url,
                connect_timeout=self.connect_timeout_s,
                max_reconnect_attempts=1,
                allow_reconnect=False,
            )
            try:
                return await asyncio.wait_for(work(client, client.jetstream()), timeout_s)
            finally:
                await client.drain()

        return asyncio.run(session())
