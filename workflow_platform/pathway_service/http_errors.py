"""Every non-2xx answer of the service is JSON `{"error": "..."}`.

aiohttp answers an unknown route, a wrong method and a body over the size limit with plain text, and an
exception in a handler with a plain-text 500; this middleware of the service's webserver turns those into JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects of the path-normalising middleware
            raise
        return _from_http_exception(request, exc)
    except UnicodeDecodeError:  # raised reading the body as text
        return error_response(400, "request body is not valid UTF-8")
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error; see the service log")


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
