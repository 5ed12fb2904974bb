"""Plugins: the built-in ones with their actions and input schemas, and HTTP plugins registered by URL."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from workflow_platform.api.code_location import DagsterUnavailable
from workflow_platform.api.config import config
from workflow_platform.api.errors import ERROR_RESPONSES, ApiError
from workflow_platform.api.requests import json_body
from workflow_platform.files import write_atomically
from workflow_platform.language.problems import Problem
from workflow_platform.language.validate import pydantic_problems
from workflow_platform.plugins import BUILTIN_IDS, Plugin, plugin_registry
from workflow_platform.plugins.http import HttpPluginRegistration, load_registrations
from workflow_platform.resources.outbound import OutboundPolicy, OutboundRefused
from workflow_platform.settings import ServiceSettings

router = APIRouter(prefix="/api", tags=["plugins"])


def describe(plugin: Plugin, registered: bool) -> dict[str, Any]:
    return {
        "id": plugin.id,
        "description": plugin.description,
        "type": "http" if registered else "builtin",
        "actions": [
            {"name": a.name, "description": a.description, "inputSchema": a.input_model.model_json_schema()}
            for a in plugin.actions.values()
        ],
    }


@router.get("/plugins")
def list_plugins() -> dict[str, Any]:
    plugins = [describe(p, p.id not in BUILTIN_IDS) for p in plugin_registry().values()]
    return {"plugins": plugins, "count": len(plugins)}


@router.get("/plugins/{plugin_id}", responses={404: {"description": "unknown plugin"}})
def get_plugin(plugin_id: str) -> dict[str, Any]:
    plugin = plugin_registry().get(plugin_id)
    if plugin is None:
        raise ApiError(404, "not_found", f"no plugin '{plugin_id}'", pluginId=plugin_id)
    return describe(plugin, plugin_id not in BUILTIN_IDS)


@router.post(
    "/plugins",
    status_code=201,
    responses=ERROR_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": HttpPluginRegistration.model_json_schema()}},
        }
    },
)
async def register_plugin(request: Request) -> JSONResponse:
    """Register (or replace) an HTTP plugin: a step `{plugin: id, action: a}` POSTs its input to baseUrl/a."""
    body = await json_body(request, config(request).max_body)
    try:
        registration = HttpPluginRegistration.model_validate(body)
    except ValidationError as error:
        raise ApiError(
            400, "invalid_plugin", "the plugin registration is invalid", pydantic_problems(error, body, "")
        ) from None
    if registration.id in BUILTIN_IDS:
        raise ApiError(409, "name_taken", f"'{registration.id}' is a built-in plugin; choose another id")
    try:  # its calls go to baseUrl from then on, so baseUrl must be a place steps may reach
        await run_in_threadpool(OutboundPolicy.from_settings(ServiceSettings()).check, registration.baseUrl)
    except OutboundRefused as refused:
        problem = Problem("/baseUrl", str(refused), "register a URL WFP_HTTP_ALLOW allows, or extend it")
        raise ApiError(400, "invalid_plugin", "the plugin's baseUrl is not allowed", [problem]) from None
    return await run_in_threadpool(_register, request, registration)  # file I/O and the reload block


def _register(request: Request, registration: HttpPluginRegistration) -> JSONResponse:
    path = config(request).plugins_file
    others = [r for r in load_registrations(path) if r.id != registration.id]
    write_atomically(path, json.dumps([r.model_dump() for r in [*others, registration]], indent=2) + "\n")
    try:
        config(request).code_location.publish(path)  # workflows using the plugin become valid jobs
    except DagsterUnavailable as error:
        raise ApiError(503, "dagster_unavailable", str(error)) from None
    plugin = plugin_registry()[registration.id]
    return JSONResponse(describe(plugin, True), status_code=201)
