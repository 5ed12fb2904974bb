"""Pathway actions: run a pipeline of the Pathway ETL service and return its computed result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from workflow_platform.language.actions import (
    Action,
    ActionError,
    ActionInput,
    ActionOutput,
    ServiceHTTPError,
    StepContext,
    Touched,
    plugin,
)

if TYPE_CHECKING:  # resources import dagster; validation must stay light
    from workflow_platform.resources.pathway import PathwayResource


class RunPipelineInput(ActionInput):
    pipelineId: str = Field(pattern=r"^[A-Za-z0-9_-]{1,128}$")
    input: dict[str, Any] = Field(default_factory=dict)


class NoInput(ActionInput):
    pass


def run_pipeline(service: PathwayResource, spec: RunPipelineInput, ctx: StepContext) -> ActionOutput:
    try:
        result = service.call("POST", f"/pipelines/{spec.pipelineId}/run", spec.input, ctx.timeout_s)
    except ServiceHTTPError as error:
        if 400 <= error.status < 500:
            # The pipeline rejected its input (or does not exist): the same call would fail again.
            raise ActionError(f"pipeline {spec.pipelineId}: {error}") from None
        raise
    touched = Touched(
        ("pathway", spec.pipelineId), "pipeline run", {"pipeline": spec.pipelineId}, wrote=False
    )
    return ActionOutput(result, [touched])


def list_pipelines(service: PathwayResource, spec: NoInput, ctx: StepContext) -> ActionOutput:
    return ActionOutput(service.call("GET", "/pipelines", timeout_s=ctx.timeout_s))


def health(service: PathwayResource, spec: NoInput, ctx: StepContext) -> ActionOutput:
    return ActionOutput(service.call("GET", "/health", timeout_s=ctx.timeout_s))


PATHWAY = plugin(
    "pathway",
    "Pathway ETL service: run pipelines computed by Pathway",
    "pathway",
    Action("runPipeline", RunPipelineInput, run_pipeline, "run a pipeline and wait for its result"),
    Action("listPipelines", NoInput, list_pipelines, "the pipelines the service offers"),
    Action("health", NoInput, health, "the service's health"),
)
