from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import dagster as dg
from pydantic import PrivateAttr

from workflow_platform.settings import ServiceSettings

if TYPE_CHECKING:  # nats-py (with aiohttp) costs ~0.3 s to import: only runs that publish pay it
    from nats.aio.client import Client
    from nats.js import JetStreamContext

T = TypeVar("T")


class NatsResource(dg.ConfigurableResource):
    """NATS with JetStream through nats-py. Each call opens a connection, runs, and drains it."""

    url: str
    connect_timeout_s: float = 5.0

    # The calls in flight, each an asyncio task in its own loop (asyncio.run in the calling thread).
    _calls: set[tuple[asyncio.AbstractEventLoop, asyncio.Task]] = PrivateAttr(default_factory=set)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> NatsResource:
        return cls(url=settings.require("nats_url"))

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
            cancelled = False
            try:
                return await asyncio.wait_for(work(client, client.jetstream()), timeout_s)
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                # Cancelled: drop the connection; draining waits for replies the step no longer wants.
                await (client.close() if cancelled else client.drain())

        async def tracked() -> T:
            call = (asyncio.get_running_loop(), asyncio.current_task())
            with self._lock:
                self._calls.add(call)
            try:
                return await session()
            finally:
                with self._lock:
                    self._calls.discard(call)

        return asyncio.run(tracked())

    def cancel(self) -> None:
        """Cancel the calls in flight (from another thread: a step that timed out, a run being terminated): their
        task is cancelled in its own loop, so the thread running it gets CancelledError at once."""
        with self._lock:
            calls = list(self._calls)
        for loop, task in calls:
            with contextlib.suppress(RuntimeError):  # its loop closed meanwhile: the call has ended
                loop.call_soon_threadsafe(task.cancel)
