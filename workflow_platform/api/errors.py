"""Error answers in the original orchestrator's shape: {error, message, details[]}."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from workflow_platform.language.problems import Problem


class ErrorDetail(BaseModel):
    pointer: str
    message: str
    hint: str = ""


class ErrorBody(BaseModel):
    error: str
    message: str
    details: list[ErrorDetail] = []


class ApiError(HTTPException):
    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        details: Sequence[Problem] = (),
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.error = error
        self.message = message
        self.details = [
            ErrorDetail(pointer=p.pointer or "/", message=p.message, hint=p.hint) for p in details
        ]
        self.extra = extra

    def response(self) -> JSONResponse:
        body = ErrorBody(error=self.error, message=self.message, details=self.details).model_dump()
        return JSONResponse({**body, **self.extra}, status_code=self.status_code, headers=self.headers)


def error_response(status: int, error: str, message: str) -> JSONResponse:
    return ApiError(status, error, message).response()


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "invalid request or workflow (one detail per problem)"},
    401: {"model": ErrorBody, "description": "missing or wrong credentials"},
    403: {"model": ErrorBody, "description": "the viewer token cannot do this"},
    413: {"model": ErrorBody, "description": "body too large"},
    415: {"model": ErrorBody, "description": "body is not application/json"},
    503: {"model": ErrorBody, "description": "PostgreSQL is not reachable: retry after Retry-After seconds"},
}
