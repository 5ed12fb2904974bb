"""The FastAPI application: routes, auth, limits, error shapes, metrics, OpenAPI."""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from workflow_platform.api import health, objects, plugins, workflows
from workflow_platform.api.auth import authorize
from workflow_platform.api.config import ApiConfig
from workflow_platform.api.errors import ApiError, error_response
from workflow_platform.api.health import Metrics
from workflow_platform.api.unavailable import (
    DATABASE_ERRORS,
    database_unreachable,
    fail_fast_when_unreachable,
    unavailable_response,
)
from workflow_platform.language.problems import pointer


def create_app(api_config: ApiConfig) -> FastAPI:
    app = FastAPI(
        title="workflow-platform API",
        version="1.0",
        description="Submit workflow.json documents and follow their executions; runs are Dagster runs.",
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
        dependencies=[Depends(authorize)],
    )
    app.state.config = api_config
    app.state.metrics = Metrics(api_config.instance)
    for router in (workflows.router, plugins.router, objects.router, health.router):
        app.include_router(router)
    app.add_exception_handler(ApiError, api_error)
    for kind in DATABASE_ERRORS:
        app.add_exception_handler(kind, database_error)
    fail_fast_when_unreachable(api_config.instance)  # the 503 comes at once, not after Dagster's retries
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.middleware("http")(count_requests)
    app.openapi = partial(openapi, app)  # type: ignore[method-assign]
    return app


async def api_error(request: Request, error: ApiError) -> JSONResponse:
    return error.response()


async def database_error(request: Request, error: Exception) -> JSONResponse:
    reason = database_unreachable(error)
    if reason is None:
        raise error  # a database error that is not an outage: a 500, as before
    return unavailable_response(reason)


async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    names = {404: "not_found", 405: "method_not_allowed"}
    return error_response(error.status_code, names.get(error.status_code, "http_error"), str(error.detail))


async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    details = [{"pointer": pointer(*e["loc"]), "message": e["msg"], "hint": ""} for e in error.errors()]
    return JSONResponse(
        {"error": "invalid_request", "message": "invalid request parameters", "details": details},
        status_code=400,
    )


async def count_requests(request: Request, call_next: Any) -> Any:
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    template = getattr(route, "path", "unmatched")
    request.app.state.metrics.observe(
        request.method, template, response.status_code, time.perf_counter() - started
    )
    return response


def openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema with the workflow.json schema as a component and the two bearer tokens, built once."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        document = workflows.workflow_document_schema()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(document.pop("$defs"))
        schema["components"]["securitySchemes"] = {
            "operator": {"type": "http", "scheme": "bearer", "description": "WFP_API_TOKEN"},
            "viewer": {"type": "http", "scheme": "bearer", "description": "WFP_API_READ_TOKEN (reads)"},
        }
        schema["security"] = [{"operator": []}, {"viewer": []}]
        components["WorkflowDocument"] = document
        # workflow.json's schema refers to its own $defs: point them at the OpenAPI components.
        app.openapi_schema = json.loads(json.dumps(schema).replace('"#/$defs/', '"#/components/schemas/'))
    return app.openapi_schema
