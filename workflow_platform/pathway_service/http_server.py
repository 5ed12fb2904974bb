"""The service's webserver (aiohttp): routes, status codes and JSON bodies; the dataflow computes every answer.

Routes: `GET /health`, `GET /pipelines`, `POST /pipelines/<id>/run` (statuses in `pipeline_requests`). A request
still without an answer after the request timeout gets a 504; its computation goes on, and its row leaves the
dataflow once answered.

Not `pw.io.http.PathwayWebserver`: it has no public hook for any of this (its `rest_connector` answers a
validator's rejection with a plain-text 400 and every result with a 200, and waits without limit), so the
service serves its own aiohttp app and feeds the dataflow through `connector`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pathway as pw
from aiohttp import web
from aiohttp.web_middlewares import normalize_path_middleware

from .http_errors import error_response, json_errors
from .pipeline import Pipeline
from .pipeline_requests import answer_status, rejection, unknown_pipeline

log = logging.getLogger(__name__)

# The dataflow's answer to a request body (`connector.RequestsConnector.answer`).
Answerer = Callable[[str], Awaitable[Any]]


class PortInUse(OSError):
    """Another process listens on the service's port."""


@dataclass(frozen=True)
class Routes:
    """Where each route's requests are answered: the documents, and each pipeline by id."""

    health: Answerer
    pipelines: Answerer
    runs: Mapping[str, tuple[Pipeline, Answerer]]


def application(routes: Routes, request_timeout: float) -> web.Application:
    # Paths with a trailing slash are redirected to the route without it.
    app = web.Application(
        middlewares=[json_errors, normalize_path_middleware(append_slash=False, remove_slash=True)]
    )
    app.router.add_route("GET", "/health", _document(routes.health, request_timeout))
    app.router.add_route("GET", "/pipelines", _document(routes.pipelines, request_timeout))
    app.router.add_route("*", "/pipelines/{id}/run", _run(routes.runs, request_timeout))
    return app


def start(app: web.Application, host: str, port: int) -> None:
    """Listen on host:port now (PortInUse if taken) and serve from a background thread from then on."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    try:
        loop.run_until_complete(web.TCPSite(runner, host, port).start())
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise PortInUse(
            exc.errno,
            f"cannot start the HTTP server on {host}:{port}: the port is already in use. Another process - "
            "possibly an earlier run of the service - is still listening on it; stop it or use another port.",
        ) from None
    # A daemon: the process ends when the dataflow stops (on SIGTERM or SIGINT), wherever requests are.
    threading.Thread(target=loop.run_forever, name="http-server", daemon=True).start()


def _document(answer: Answerer, request_timeout: float) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        return await _answered(request, answer, "", request_timeout)

    return handle


def _run(
    runs: Mapping[str, tuple[Pipeline, Answerer]], request_timeout: float
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        pipeline_id = request.match_info["id"]
        if pipeline_id not in runs:
            return unknown_pipeline(pipeline_id, list(runs))
        if request.method != "POST":
            raise web.HTTPMethodNotAllowed(request.method, ["POST"])
        pipeline, answer = runs[pipeline_id]
        body = await request.text()
        rejected = rejection(pipeline, body)
        if rejected is not None:
            return rejected
        return await _answered(request, answer, body, request_timeout)

    return handle


async def _answered(
    request: web.Request, answer: Answerer, body: str, request_timeout: float
) -> web.Response:
    try:
        result = await asyncio.wait_for(answer(body), request_timeout)
    except TimeoutError:
        log.error("%s %s: no answer after %g s", request.method, request.path, request_timeout)
        return error_response(504, f"no answer after {request_timeout:g} s")
    status, document = answer_status(result)
    return web.json_response(document, status=status, dumps=pw.Json.dumps)
