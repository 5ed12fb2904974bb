"""Every non-2xx answer of the service is JSON `{"error": "..."}`, and no request waits forever.

Pathway's REST connector answers a rejected request with a plain-text 400 (the message in the reason phrase),
an unknown route with aiohttp's plain-text 404, and waits without limit for the dataflow's answer. This aiohttp
middleware, installed on the connector's webserver, turns those into JSON and bounds the wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def json_errors_middleware(request_timeout: float) -> Middleware:
    """The middleware; a request without an answer after `request_timeout` seconds gets a 504."""

    @web.middleware
    async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        answer = asyncio.ensure_future(handler(request))
        try:
            # Shielded: on timeout the handler keeps waiting for the dataflow, because the connector only
            # removes a request from the dataflow's state once it has its answer.
            response = await asyncio.wait_for(asyncio.shield(answer), request_timeout)
        except web.HTTPException as exc:
            if exc.status < 400:  # redirects of the path-normalising middleware
                raise
            return _from_http_exception(request, exc)
        except UnicodeDecodeError:  # raised by the connector reading the body as text
            return error_response(400, "request body is not valid UTF-8")
        except TimeoutError:
            log.error("%s %s: no answer after %g s", request.method, request.path, request_timeout)
            _finish_in_background(answer)
            return error_response(504, f"no answer after {request_timeout:g} s")
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return error_response(500, "internal error; see the service log")
        if isinstance(response, web.Response) and response.status >= 500 and not response.body:
            # What the connector sends when the dataflow computed an error value for this request.
            return error_response(500, "the pipeline failed on this request; see the service log")
        return response

    return json_errors


_background: set[asyncio.Future] = set()


def _finish_in_background(answer: asyncio.Future) -> None:
    _background.add(answer)  # the event loop only holds tasks weakly
    answer.add_done_callback(_forget)


def _forget(answer: asyncio.Future) -> None:
    _background.discard(answer)
    if not answer.cancelled():
        answer.exception()  # retrieved, so asyncio does not warn about an exception nobody awaited


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    if exc.status == 404:
        message = f"no route {request.method} {request.path}; GET /pipelines lists the pipelines"
        return error_response(404, message)
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        message = f"method {request.method} not allowed on {request.path}; allowed: {allowed}"
        return error_response(405, message, headers={"Allow": allowed})
    if exc.status == 413:  # its text names the size limit
        return error_response(413, exc.text or exc.reason)
    return error_response(exc.status, exc.reason)
