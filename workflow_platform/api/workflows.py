"""Workflows and executions: submit (register as a Dagster job + launch a run), list, inspect, re-run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from workflow_platform.api.catalog import CATALOG
from workflow_platform.api.code_location import DagsterUnavailable
from workflow_platform.api.config import config
from workflow_platform.api.errors import ERROR_RESPONSES, ApiError
from workflow_platform.api.executions import describe_run
from workflow_platform.api.idempotency import digest
from workflow_platform.api.requests import json_body
from workflow_platform.files import write_atomically
from workflow_platform.language.problems import Problem, pointer
from workflow_platform.language.spec import WorkflowSpec, job_name
from workflow_platform.language.validate import check_param_values
from workflow_platform.orchestration.catalog import check_document, workflow_schema
from workflow_platform.orchestration.partitions import InvalidParams, partition_params
from workflow_platform.orchestration.preflight import preflight
from workflow_platform.orchestration.workflow_run import WORKFLOW_TAG, params_run_config
from workflow_platform.settings import ServiceSettings

IDEMPOTENCY_TAG = "wfp/idempotency-key"
SOURCE_TAG = "wfp/source"

router = APIRouter(prefix="/api", tags=["workflows"])

_SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/WorkflowDocument"},
                        {
                            "type": "object",
                            "required": ["workflow"],
                            "properties": {
                                "workflow": {"$ref": "#/components/schemas/WorkflowDocument"},
                                "params": {"type": "object"},
                            },
                        },
                    ]
                }
            }
        },
    }
}


def _known() -> dict[str, tuple[WorkflowSpec, Path]]:
    return CATALOG.specs()


def _launch(request: Request, spec: WorkflowSpec, path: Path, params: dict[str, Any], key: str | None) -> str:
    tags = {WORKFLOW_TAG: spec.name, SOURCE_TAG: "api"}
    if key:
        tags[IDEMPOTENCY_TAG] = key
    try:
        params, partition = partition_params(spec, params)
    except InvalidParams as error:
        problem = Problem(pointer("params", spec.partitions.param), str(error))
        raise ApiError(400, "invalid_params", str(error), [problem]) from None
    if partition:
        tags["dagster/partition"] = partition
    return config(request).runs.submit(spec, path, params_run_config(params), tags)


def _idempotent(
    request: Request, key: str | None, what: Any, make: Callable[[], JSONResponse]
) -> JSONResponse:
    """`make()` once per Idempotency-Key: a repeated request (same key, same request) gets the first one's run."""
    if not key:
        return make()
    keys = config(request).idempotency
    first = keys.claim(key, digest(what))
    if first is not None:
        run = config(request).instance.get_run_by_id(first)
        body = {"executionId": first, "workflowId": run.tags.get(WORKFLOW_TAG) if run else None}
        body["status"] = run.status.value if run else "UNKNOWN"
        return JSONResponse(body, status_code=201, headers={"Idempotent-Replayed": "true"})
    try:
        response = make()
    except BaseException:
        keys.release(key)
        raise
    keys.record(key, json.loads(response.body)["executionId"])
    return response


def _problems(problems: list[Problem], message: str) -> ApiError:
    return ApiError(400, "invalid_workflow", message, problems)


def _write_if_changed(path: Path, text: str) -> None:
    """Leave an identical file alone: its timestamp tells whether the code location has it."""
    try:
        if path.read_text() == text:
            return
    except FileNotFoundError:
        pass
    write_atomically(path, text)


@router.post(
    "/workflows",
    status_code=201,
    responses=ERROR_RESPONSES,
    openapi_extra=_SUBMIT_BODY,
)
async def submit_workflow(request: Request) -> JSONResponse:
    """Validate a workflow, register it as a Dagster job, and launch a run. Body: the workflow itself, or
    `{workflow, params}`. `Idempotency-Key` makes a retried request return the same run."""
    # Everything but reading the body blocks (storage queries, validation, preflight, reload, launch): it runs
    # in the thread pool so that concurrent submissions and execution polls are not queued behind it.
    key = request.headers.get("idempotency-key")
    body = await json_body(request, config(request).max_body)
    request_id = {"submit": body}
    return await run_in_threadpool(_idempotent, request, key, request_id, lambda: _submit(request, body, key))


def _submit(request: Request, body: Any, key: str | None) -> JSONResponse:
    document, params = body, {}
    if isinstance(body, dict) and "workflow" in body and "steps" not in body:
        document, params = body["workflow"], body.get("params") or {}
        if not isinstance(params, dict):
            raise ApiError(400, "invalid_params", "params must be an object of name -> value")
    spec, problems = check_document(document, "request")
    if spec is None:
        raise _problems(problems, f"the workflow has {len(problems)} problem(s); nothing was run")
    known = _known()
    shipped = known.get(spec.name)
    submitted_dir = config(request).submitted_dir
    if shipped and submitted_dir not in shipped[1].parents:
        raise ApiError(
            409,
            "name_taken",
            f"a workflow named '{spec.name}' is shipped in {shipped[1].parent}; rename yours",
        )
    # Dagster job names replace '-' with '_': 'a-b' and 'a_b' would be one job, and one would run the other.
    for other, path in known.values():
        if other.name != spec.name and job_name(other) == job_name(spec):
            raise ApiError(
                409,
                "name_taken",
                f"'{spec.name}' and the workflow '{other.name}' ({path}) would be the same Dagster job "
                f"'{job_name(spec)}'; rename yours",
            )
    problems = check_param_values(spec, params)
    if not problems and ServiceSettings().pg_dsn:
        with config(request).preflight_database() as postgres:
            problems = preflight(spec, postgres)
    if problems:
        raise _problems(problems, f"the workflow has {len(problems)} problem(s); nothing was run")
    path = submitted_dir / spec.name / "workflow.json"
    _write_if_changed(path, json.dumps(document, indent=2) + "\n")
    try:
        config(request).code_location.publish(path)
    except DagsterUnavailable as error:
        raise ApiError(503, "dagster_unavailable", str(error)) from None
    run_id = _launch(request, spec, path, params, key)
    return JSONResponse({"executionId": run_id, "workflowId": spec.name, "status": "QUEUED"}, status_code=201)


@router.get("/workflows")
def list_workflows() -> dict[str, Any]:
    """Every workflow the platform runs (shipped and submitted), with its job and schedule."""
    items = []
    for name, (spec, path) in sorted(_known().items()):
        items.append(
            {
                "name": name,
                "description": spec.description,
                "job": job_name(spec),
                "steps": len(spec.steps),
                "params": {k: v.model_dump(exclude_none=True) for k, v in spec.params.items()},
                "schedule": spec.schedule.model_dump() if spec.schedule else None,
                "source": str(path),
            }
        )
    return {"workflows": items, "count": len(items)}


@router.get("/workflows/{name}", responses={404: {"description": "unknown workflow"}})
def get_workflow(name: str) -> dict[str, Any]:
    known = _known()
    if name not in known:
        raise ApiError(404, "not_found", f"no workflow named '{name}'", workflowId=name)
    spec, path = known[name]
    return {
        "workflow": spec.model_dump(mode="json", exclude_none=True),
        "job": job_name(spec),
        "source": str(path),
    }


@router.post(
    "/workflows/{name}/run",
    status_code=201,
    responses={**ERROR_RESPONSES, 404: {"description": "unknown workflow"}},
)
async def run_workflow(name: str, request: Request) -> JSONResponse:
    """Launch a run of a registered workflow. Optional body: `{params: {...}}`."""
    known = await run_in_threadpool(_known)
    if name not in known:
        raise ApiError(404, "not_found", f"no workflow named '{name}'", workflowId=name)
    key = request.headers.get("idempotency-key")
    body = await json_body(request, config(request).max_body, required=False)
    body = {} if body is None else body  # no body: the params' defaults; `[]` or `0` is not a body of params
    request_id = {"run": name, "body": body}
    return await run_in_threadpool(
        _idempotent, request, key, request_id, lambda: _run(*known[name], request, body, key)
    )


def _run(spec: WorkflowSpec, path: Path, request: Request, body: Any, key: str | None) -> JSONResponse:
    params = body.get("params", {}) if isinstance(body, dict) else None
    if not isinstance(params, dict):
        raise ApiError(400, "invalid_params", 'the body must be {"params": {name: value}}')
    if problems := check_param_values(spec, params):
        raise _problems(problems, "invalid params; nothing was run")
    run_id = _launch(request, spec, path, params, key)
    return JSONResponse({"executionId": run_id, "workflowId": spec.name, "status": "QUEUED"}, status_code=201)


@router.get("/executions")
def list_executions(
    request: Request,
    limit: int = Query(20, ge=1, le=200),
    cursor: str | None = Query(None, description="the last executionId of the previous page"),
    workflow: str | None = None,
) -> dict[str, Any]:
    """Executions, newest first; pass `nextCursor` as `cursor` for the next page."""
    instance = config(request).instance
    filters = dg.RunsFilter(tags={WORKFLOW_TAG: workflow}) if workflow else None
    if cursor and instance.get_run_by_id(cursor) is None:
        raise ApiError(400, "invalid_cursor", f"cursor '{cursor}' is not an execution id")
    records = instance.get_run_records(filters=filters, limit=limit, cursor=cursor)
    items = [describe_run(instance, record, with_events=False) for record in records]
    return {"items": items, "nextCursor": items[-1]["executionId"] if len(items) == limit else None}


@router.get("/executions/{execution_id}", responses={404: {"description": "unknown execution"}})
async def get_execution(
    execution_id: str,
    request: Request,
    wait: float = Query(
        0,
        ge=0,
        le=60,
        description="seconds to wait for the execution to finish before answering (instead of polling)",
    ),
) -> dict[str, Any]:
    """An execution read from Dagster: status, each step's status, attempts, timings, result, error; events.
    With `wait`, the answer comes when the execution finishes (or when `wait` seconds have passed)."""
    instance = config(request).instance

    def read() -> Any:
        return instance.get_run_record_by_id(execution_id) if len(execution_id) <= 64 else None

    record = await run_in_threadpool(read)
    if record is None:
        raise ApiError(404, "not_found", f"no execution '{execution_id}'", executionId=execution_id)
    if wait and not record.dagster_run.is_finished:
        await config(request).run_ends.wait(execution_id, wait)
        record = await run_in_threadpool(read)
    return await run_in_threadpool(describe_run, instance, record)


def workflow_document_schema() -> dict[str, Any]:
    """workflow.json's JSON Schema, for the OpenAPI document's components."""
    schema = workflow_schema(action_inputs=False)
    schema.pop("$schema", None)
    schema.pop("$id", None)
    return schema
