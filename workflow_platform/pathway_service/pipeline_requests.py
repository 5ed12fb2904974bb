"""The gate of `POST /pipelines/<id>/run`: status codes that say what is wrong, and staging of valid requests.

- unknown pipeline id: 404 `{"error", "pipelines": [known ids]}` (before anything is read);
- body that is not JSON (or not UTF-8): 400 `{"error"}`;
- JSON body that is not a valid input: 422 `{"error", "problems": [{"field", "message"}]}`;
- tabular input by reference that cannot be read: 422 `{"error", "field", "ref"}`; 503 if the store is down.

Pathway's REST connector reads the body itself (it refuses a request whose body was read before) and answers
its validator's rejections with a 400, the dataflow's results with a 200. So the connector's validator
(`request_validator`) parses and stages the body and leaves its verdict in a per-request `_Gate` that this
middleware reads to pick the status; and a failure the dataflow finds (an unreadable reference) comes back as
a result marked with `STATUS_KEY`, which the middleware turns into that status.
"""

from __future__ import annotations

import contextvars
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .http_errors import Handler, Middleware, error_response
from .pipeline import BadRequest, InvalidInput, Pipeline
from .staging import STAGED

STATUS_KEY = "__status__"
_MARKED = b'{"' + STATUS_KEY.encode() + b'":'
_RUN_ROUTE = re.compile(r"/pipelines/(?P<id>[^/]+)/run")


@dataclass
class _Gate:
    """What the validator decided about the request being handled."""

    rejection: BadRequest | InvalidInput | None = None
    key: str | None = None


_GATE: contextvars.ContextVar[_Gate] = contextvars.ContextVar("pipeline_request_gate")


def request_validator(pipeline: Pipeline) -> Callable[[dict[str, Any], Mapping[str, str]], str | None]:
    """The connector's validator for `pipeline`: None (and the request staged) or the rejection message."""

    def validate(payload: dict[str, Any], _headers: Mapping[str, str]) -> str | None:
        gate = _GATE.get()  # set by the middleware, which runs in the same task
        body = payload["query"]
        try:
            model = pipeline.parse_body(body)
        except (BadRequest, InvalidInput) as exc:
            gate.rejection = exc
            return str(exc)
        gate.key = STAGED.key_of(pipeline.id, body)
        STAGED.hold(gate.key, model)
        return None

    return validate


def failure_result(status: int, error: str, **details: Any) -> dict[str, Any]:
    """A result the dataflow gives instead of an answer; the middleware sends it with `status`."""
    return {STATUS_KEY: status, "error": error, **details}


def pipeline_requests_middleware(pipelines: Mapping[str, Pipeline]) -> Middleware:
    @web.middleware
    async def pipeline_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        match = _RUN_ROUTE.fullmatch(request.path)
        if match is None:
            return await handler(request)
        if match["id"] not in pipelines:
            known = list(pipelines)
            message = f"unknown pipeline {match['id']!r}; the pipelines are: {', '.join(known)}"
            return web.json_response({"error": message, "pipelines": known}, status=404)
        gate = _Gate()
        _GATE.set(gate)
        try:
            response = await handler(request)
        except web.HTTPBadRequest:
            if gate.rejection is None:
                raise
            return _rejected(gate.rejection)
        finally:
            if gate.key is not None:
                STAGED.release(gate.key)
        return _with_marked_status(response)

    return pipeline_requests


def _rejected(rejection: BadRequest | InvalidInput) -> web.Response:
    if isinstance(rejection, InvalidInput):
        return web.json_response({"error": str(rejection), "problems": rejection.problems}, status=422)
    return error_response(400, str(rejection))


def _with_marked_status(response: web.StreamResponse) -> web.StreamResponse:
    if not (isinstance(response, web.Response) and response.status == 200):
        return response
    body = response.body
    if not (isinstance(body, bytes) and body.startswith(_MARKED)):
        return response
    document = json.loads(body)
    return web.json_response(document, status=document.pop(STATUS_KEY))
