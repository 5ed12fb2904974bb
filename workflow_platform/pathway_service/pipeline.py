"""The contract of a pipeline: each module under `pipelines/` exports one `Pipeline`.

Importing this (or a pipeline module) does not import pathway: `build` imports it when the service assembles
the dataflow, so ids, descriptions and input models can be read cheaply anywhere (tests, static validation).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

if TYPE_CHECKING:
    import pathway as pw


class InvalidInput(ValueError):
    """A request body that is not a valid input of the pipeline; the message says why, on one line."""


@dataclass(frozen=True)
class Pipeline:
    """A pipeline served at `POST /pipelines/<id>/run`.

    `input_model` validates the request body before it enters the dataflow (declare it with
    `extra="forbid", strict=True`); its JSON Schema is what `GET /pipelines` publishes. `build` receives a
    table with one row per request and one column, `input` (Json): the body as `input_model` dumps it, defaults
    filled in. It returns a table with a Json `result` column whose rows keep the ids of the requests they
    answer: that is how Pathway's REST connector finds the HTTP call waiting for each answer.
    """

    id: str
    description: str
    input_model: type[BaseModel]
    build: Callable[[pw.Table], pw.Table]

    @property
    def route(self) -> str:
        return f"/pipelines/{self.id}/run"

    def parse_body(self, body: str) -> dict[str, Any]:
        """The input a request body stands for, defaults filled in; an empty body means `{}`."""
        try:
            data = json.loads(body) if body.strip() else {}
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidInput(f"request body must be a JSON object, got {_json_type(data)}")
        try:
            return self.input_model.model_validate(data).model_dump(mode="json")
        except ValidationError as exc:
            problems = "; ".join(_describe(error) for error in exc.errors())
            raise InvalidInput(f"invalid input for {self.id}: {problems}") from None

    def check_body(self, body: str) -> str | None:
        """None if `body` is a valid input, else the message for the 400 answer."""
        try:
            self.parse_body(body)
        except InvalidInput as exc:
            return str(exc)
        return None

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "description": self.description, "input": self.input_model.model_json_schema()}


def _describe(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "body"
    message = f"{where}: {error['msg']}"
    if error["type"] != "missing":
        message += f" (got {json.dumps(error['input'], default=str)[:80]})"
    # One line: the REST connector sends the message as the HTTP reason phrase, which cannot hold newlines.
    return " ".join(message.split())


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
