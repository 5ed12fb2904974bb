"""HTTP requests into the dataflow and its answers back, with Pathway's public connector API.

Each route has a `RequestsConnector`: a `pw.io.python` input table with one row per request waiting for its
answer (`request_id`, `body`), and a `pw.io.subscribe` on the table of answers. A request's row leaves the
dataflow once its answer is out, so operators that keep state (joins, groupbys) forget it. This is what
`pw.io.http.rest_connector` does, minus its webserver: ours (`http_server`) picks the status codes.
"""

from __future__ import annotations

import asyncio
import queue
import uuid
from typing import Any

import pathway as pw

from .pipeline_requests import failure_result

# What a request whose computation failed (an error value in the dataflow) is answered.
PIPELINE_FAILED = failure_result(500, "the pipeline failed on this request; see the service log")


class _RequestSchema(pw.Schema):
    request_id: str = pw.column_definition(primary_key=True)
    body: str


class _Requests(pw.io.python.ConnectorSubject):
    """The rows of the requests waiting for an answer: added when one arrives, deleted once answered."""

    def __init__(self) -> None:
        super().__init__(datasource_name="http-requests")
        self._changes: queue.SimpleQueue[tuple[bool, str, str]] = queue.SimpleQueue()

    def run(self) -> None:
        # Runs for the life of the service, in the thread Pathway gives the connector.
        while True:
            arrived, request_id, body = self._changes.get()
            if arrived:
                self.next(request_id=request_id, body=body)
            else:
                self.delete(request_id=request_id, body=body)

    def arrive(self, request_id: str, body: str) -> None:
        self._changes.put((True, request_id, body))

    def leave(self, request_id: str, body: str) -> None:
        self._changes.put((False, request_id, body))


class RequestsConnector:
    """One route's requests as a table (`requests`, with the `body` of each) and their answers back."""

    def __init__(self, name: str, autocommit_ms: int) -> None:
        self._subject = _Requests()
        self.requests: pw.Table = pw.io.python.read(
            self._subject, schema=_RequestSchema, autocommit_duration_ms=autocommit_ms, name=name
        )
        # Written by the webserver's event loop, read by the subscriber in Pathway's thread: each entry by one
        # of them at a time (added before its request is sent, removed when its answer arrives).
        self._pending: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future, str]] = {}

    def respond(self, answers: pw.Table) -> None:
        """Answer each request with the `result` (Json) of the row of `answers` that has the request's id."""
        replies = answers.join(self.requests, pw.left.id == pw.right.id, id=pw.left.id).select(
            pw.right.request_id, result=pw.fill_error(pw.left.result, pw.Json(PIPELINE_FAILED))
        )
        pw.io.subscribe(replies, on_change=self._on_reply)

    async def answer(self, body: str) -> Any:
        """The dataflow's answer (a JSON value) to a request with this body."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        request_id = uuid.uuid4().hex
        self._pending[request_id] = (loop, future, body)
        self._subject.arrive(request_id, body)
        return await future

    def _on_reply(self, key: pw.Pointer, row: dict[str, Any], time: int, is_addition: bool) -> None:
        if not is_addition:  # the retraction that follows the request's deletion
            return
        pending = self._pending.pop(row["request_id"], None)
        if pending is None:  # a second answer to a request already answered: the first one stands
            return
        loop, future, body = pending
        self._subject.leave(row["request_id"], body)
        loop.call_soon_threadsafe(_settle, future, row["result"].value)


def _settle(future: asyncio.Future, result: Any) -> None:
    if not future.done():  # else the caller stopped waiting (timed out)
        future.set_result(result)
