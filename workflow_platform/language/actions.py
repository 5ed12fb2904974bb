"""What a plugin is: named actions, each an input model plus a function that talks to one resource."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict


class ActionInput(BaseModel):
    """Base of every action's input model: unknown keys are an error, so typos surface at validation."""

    model_config = ConfigDict(extra="forbid")


class ActionError(Exception):
    """The action failed because of its input (not the service): retrying will not help."""


class ServiceHTTPError(Exception):
    """A service answered an HTTP request with an error status."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Touched:
    """Something a step read or wrote, reported to Dagster's asset catalog for lineage."""

    asset_key: tuple[str, ...]
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
    wrote: bool = True  # False: only read (an observation)


@dataclass
class ActionOutput:
    value: Any
    touched: list[Touched] = field(default_factory=list)
    preview_markdown: str | None = None  # shown on the step's output in the Dagster UI


@dataclass(frozen=True)
class StepContext:
    run_id: str
    step_id: str
    workflow: str
    # What side-effect keys (message ids, result objects) derive from: the run's root (Dagster's
    # dagster/root_run_id), or the run itself when it has none, so a re-execution ("Re-execute all", a run
    # retry) or a retried step writes what the first run wrote instead of a second copy.
    execution_key: str
    # When the execution (the run's root) started, ISO 8601; looked up on first call (a storage query).
    execution_started: Callable[[], str] = field(default=lambda: dt.datetime.now(dt.UTC).isoformat())
    timeout_s: float | None = None
    # Resources an action uses besides its plugin's own (see Action.uses), by resource key.
    resources: Mapping[str, Any] = field(default_factory=dict)


ActionFn = Callable[[Any, Any, StepContext], ActionOutput]


@dataclass(frozen=True)
class Action:
    name: str
    input_model: type[ActionInput]
    fn: ActionFn
    description: str
    uses: tuple[str, ...] = ()  # extra resource keys, e.g. a postgres select writing a large result to S3


@dataclass(frozen=True)
class Plugin:
    id: str
    description: str
    resource_key: str | None
    actions: dict[str, Action]


def plugin(plugin_id: str, description: str, resource_key: str | None, *actions: Action) -> Plugin:
    return Plugin(plugin_id, description, resource_key, {a.name: a for a in actions})


def jsonable(value: Any) -> Any:
    """Turn database / client values into JSON values (Decimal -> float, datetime -> ISO text ...)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    return str(value)
