"""`POST /pipelines/<id>/run`: status codes that say what is wrong with a request, or what the dataflow found.

- unknown pipeline id: 404 `{"error", "pipelines": [known ids]}` (before anything is read);
- body that is not JSON (or not UTF-8): 400 `{"error"}`;
- JSON body that is not a valid input: 422 `{"error", "problems": [{"field", "message"}]}`;
- tabular input by reference that cannot be read: 422 `{"error", "field", "ref"}`; 503 if the store is down.

The first three are decided at the door, before the request enters the dataflow. A failure the dataflow finds
(an unreadable reference) comes back as its result, marked with `STATUS_KEY`: `answer_status` takes it out.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .http_errors import error_response
from .pipeline import BadRequest, InvalidInput, Pipeline

STATUS_KEY = "__status__"


def failure_result(status: int, error: str, **details: Any) -> dict[str, Any]:
    """A result the dataflow gives instead of an answer; it is sent with `status`."""
    return {STATUS_KEY: status, "error": error, **details}


def answer_status(result: Any) -> tuple[int, Any]:
    """The status a result of the dataflow is sent with, and the document to send."""
    if isinstance(result, dict) and STATUS_KEY in result:
        document = dict(result)
        return document.pop(STATUS_KEY), document
    return 200, result


def unknown_pipeline(pipeline_id: str, known: list[str]) -> web.Response:
    message = f"unknown pipeline {pipeline_id!r}; the pipelines are: {', '.join(known)}"
    return web.json_response({"error": message, "pipelines": known}, status=404)


def rejection(pipeline: Pipeline, body: str) -> web.Response | None:
    """The 400 or 422 answer to a body that is not a valid input of `pipeline`; None if it is one."""
    try:
        pipeline.parse_body(body)
    except InvalidInput as exc:
        return web.json_response({"error": str(exc), "problems": exc.problems}, status=422)
    except BadRequest as exc:
        return error_response(400, str(exc))
    return None
