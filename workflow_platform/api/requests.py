"""Reading request bodies the way the original orchestrator's clients send them, with precise 4xx answers."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from workflow_platform.api.errors import ApiError
from workflow_platform.language import json_input

MAX_BODY_BYTES = 1024 * 1024


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def json_body(request: Request, max_bytes: int = MAX_BODY_BYTES, required: bool = True) -> Any:
    """The JSON body: 415 if it is not JSON, 413 if too large, 400 if malformed (never a 500)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, "payload_too_large", f"body is {declared} bytes; the limit is {max_bytes}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise ApiError(413, "payload_too_large", f"body exceeds the limit of {max_bytes} bytes")
    if not body.strip():
        if required:
            raise ApiError(400, "empty_body", "the request has no body; send a JSON document")
        return None
    content_type = request.headers.get("content-type", "")
    if not _is_json(content_type):
        shown = content_type or "none"
        raise ApiError(415, "unsupported_media_type", f"content type is {shown}; send application/json")
    try:
        return json_input.loads(body)
    except UnicodeDecodeError:
        raise ApiError(400, "malformed_json", "the body is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        message = f"malformed JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        raise ApiError(400, "malformed_json", message) from None
    except json_input.JsonInputError as error:
        raise ApiError(400, "unsupported_json", str(error)) from None
