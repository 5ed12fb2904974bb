"""HTTP actions: a generic `http.request`, and plugins registered by URL (the original orchestrator's
`POST /api/plugins`): a step `{plugin: <id>, action: <a>}` POSTs its input to `{baseUrl}/{a}`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field

from workflow_platform.language.actions import (
    Action,
    ActionError,
    ActionInput,
    ActionOutput,
    Plugin,
    StepContext,
    plugin,
)
from workflow_platform.resources.outbound import OutboundRefused
from workflow_platform.settings import PlatformSettings

if TYPE_CHECKING:  # resources import dagster; validation must stay light
    from workflow_platform.resources.http import HttpResource


class HttpRequestInput(ActionInput):
    url: str = Field(pattern=r"^https?://")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    query: dict[str, str | int | float | bool] = Field(default_factory=dict)
    json_body: Any = Field(None, alias="json")


class RegisteredActionInput(ActionInput):
    """A registered plugin's action takes any JSON object; the remote service validates it."""

    model_config = ConfigDict(extra="allow")


class HttpPluginRegistration(BaseModel):
    """A plugin served over HTTP, as registered with the original orchestrator."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    name: str = ""
    baseUrl: str = Field(pattern=r"^https?://")
    # Action names become URL path segments ({baseUrl}/{action}): names, not paths ('../graphql').
    exposes: list[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]] = Field(min_length=1)
    description: str = ""


def _response_value(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _check(response: requests.Response, what: str) -> None:
    if 400 <= response.status_code < 500:
        raise ActionError(f"{what}: HTTP {response.status_code}: {response.text[:500]}")
    response.raise_for_status()  # 5xx: a service failure, worth retrying


def http_request(http: HttpResource, spec: HttpRequestInput, ctx: StepContext) -> ActionOutput:
    try:
        response = http.request(
            spec.method, spec.url, ctx.timeout_s, headers=spec.headers, params=spec.query, json=spec.json_body
        )
    except OutboundRefused as refused:
        raise ActionError(f"{spec.method} refused: {refused}") from None
    _check(response, f"{spec.method} {spec.url}")
    return ActionOutput({"status": response.status_code, "body": _response_value(response)})


def registered_plugin(registration: HttpPluginRegistration) -> Plugin:
    def make(action_name: str) -> Action:
        url = f"{registration.baseUrl.rstrip('/')}/{action_name}"

        def call(http: HttpResource, spec: RegisteredActionInput, ctx: StepContext) -> ActionOutput:
            try:
                response = http.request("POST", url, ctx.timeout_s, checked=True, json=spec.model_dump())
            except OutboundRefused as refused:  # a redirect away from the plugin
                raise ActionError(f"POST refused: {refused}") from None
            _check(response, f"POST {url}")
            return ActionOutput(_response_value(response))

        return Action(action_name, RegisteredActionInput, call, f"POST {url}")

    return plugin(
        registration.id,
        registration.description or registration.name or registration.baseUrl,
        "http",
        *(make(a) for a in registration.exposes),
    )


def registrations_file() -> Path:
    return PlatformSettings().plugins_file or Path.cwd() / "plugins.json"


def load_registrations(path: Path | None = None) -> list[HttpPluginRegistration]:
    path = path or registrations_file()
    if not path.exists():
        return []
    return [HttpPluginRegistration.model_validate(item) for item in json.loads(path.read_text())]


HTTP = plugin(
    "http",
    "Call any HTTP endpoint",
    "http",
    Action("request", HttpRequestInput, http_request, "one HTTP request; JSON answers are parsed"),
)
