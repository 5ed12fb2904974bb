"""The contract of a pipeline: each module under `pipelines/` exports one `Pipeline`.

Importing this (or a pipeline module) does not import pathway: `build` imports it when the service assembles
the dataflow, so ids, descriptions and input models can be read cheaply anywhere (tests, static validation).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

if TYPE_CHECKING:
    import pathway as pw

    from .object_store import ObjectStore
    from .staging import StagedRequest


class BadRequest(ValueError):
    """A request body that is not JSON at all (answered 400)."""


class InvalidInput(ValueError):
    """A JSON body that is not a valid input of the pipeline (answered 422).

    The message says which fields are wrong and why, on one line; `problems` lists them one by one.
    """

    def __init__(self, message: str, problems: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.problems = problems


@dataclass(frozen=True)
class Pipeline:
    """A pipeline served at `POST /pipelines/<id>/run`.

    `input_model` validates the request body before it enters the dataflow (declare it with
    `extra="forbid", strict=True`; tabular fields use `tabular.TabularInput`); its JSON Schema is what
    `GET /pipelines` publishes. `build` receives a table with one row per request and two columns: `input`
    (Json), the body as `input_model` dumps it, defaults filled in and every tabular input replaced by a
    description of it; and `request` (pw.PyObjectWrapper[staging.StagedRequest]), whose `tables` are the
    request's tables, already read. It returns a table with a Json `result` column whose rows keep the ids of
    the requests they answer: that is how `connector.RequestsConnector` finds the HTTP call waiting for each.
    """

    id: str
    description: str
    input_model: type[BaseModel]
    build: Callable[[pw.Table], pw.Table]
    # Called once per request after its tables are read, e.g. to load a model from the store into
    # `staged.derived`; it may raise staging.UnreadableReference (422) or ObjectStoreUnavailable (503).
    prepare: Callable[[StagedRequest, ObjectStore], None] | None = None

    @property
    def route(self) -> str:
        return f"/pipelines/{self.id}/run"

    def parse_body(self, body: str) -> BaseModel:
        """The input a request body stands for; an empty body means `{}`."""
        try:
            data = json.loads(body) if body.strip() else {}
        except json.JSONDecodeError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            problem = {"field": "body", "message": f"must be a JSON object, got {json_type(data)}"}
            raise InvalidInput(
                f"invalid input for {self.id}: request body must be a JSON object, got {json_type(data)}",
                [problem],
            )
        try:
            return self.input_model.model_validate(data)
        except ValidationError as exc:
            problems = [_problem(error) for error in exc.errors()]
            described = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
            raise InvalidInput(f"invalid input for {self.id}: {described}", problems) from None

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "description": self.description, "input": self.input_model.model_json_schema()}


def dataflow_of(package: str) -> Callable[[pw.Table], pw.Table]:
    """`build` for a pipeline package whose dataflow is `<package>.dataflow.build`, imported on first use, so
    that the package (its id, description and input model) stays importable without pathway."""

    def build(requests: pw.Table) -> pw.Table:
        return importlib.import_module(f"{package}.dataflow").build(requests)

    return build


# Errors whose message already says what was given (custom ones name the offending row or key).
_SAYS_WHAT_IT_GOT = {"missing", "tabular_input"}


def _problem(error: ErrorDetails) -> dict[str, str]:
    field = ".".join(str(part) for part in error["loc"]) or "body"
    message = error["msg"]
    if error["type"] not in _SAYS_WHAT_IT_GOT:
        message += f" (got {preview(error['input'])})"
    # One line: messages travel in logs and in step failures, which read best unbroken.
    return {"field": field, "message": " ".join(message.split())}


def preview(value: object) -> str:
    """A short rendering of a value for an error message (an inline table can be a megabyte)."""
    if isinstance(value, list):
        return f"an array of {len(value)} items"
    if isinstance(value, dict):
        keys = ", ".join(list(map(str, value))[:5])
        return f"an object with keys {keys}" if value else "an empty object"
    return json.dumps(value, default=str)[:80]


def json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
