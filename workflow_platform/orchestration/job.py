"""WorkflowSpec -> Dagster job: one op per step (step.py), wired by the steps' needs and template reads, with the
workflow's params as a resource and its daily partitions as partitioned config (DESIGN §1, §6)."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from workflow_platform.language.spec import ParamSpec, WorkflowSpec, dagster_name, job_name
from workflow_platform.language.templates import analyze
from workflow_platform.language.validate import ancestors, template_strings
from workflow_platform.orchestration.assets import workflow_lineage, workflow_partitions
from workflow_platform.orchestration.step import step_op
from workflow_platform.orchestration.workflow_run import PARAMS_RESOURCE, WORKFLOW_TAG, params_run_config
from workflow_platform.plugins import Plugin, plugin_registry
from workflow_platform.resources import service_resources


def build_job(
    spec: WorkflowSpec, source: Path | None = None, registry: Mapping[str, Plugin] | None = None
) -> dg.JobDefinition:
    """The Dagster job of a validated workflow (validate first: this assumes a valid spec). Its resources: the
    workflow's params, and the services' (`service_resources()`, the same binding definitions.py gives its
    sensors): Dagster accepts a job's resources only complete, so the per-job params resource brings them along.
    Compiling touches no service: the resources connect when a run uses them."""
    registry = plugin_registry() if registry is None else registry
    graph = {s.id: list(s.needs) for s in spec.steps}
    step_ids = set(graph)
    lineage = workflow_lineage(spec)
    ops: list[dg.OpDefinition] = []
    dependencies: dict[dg.NodeInvocation, dict[str, dg.DependencyDefinition]] = {}
    for step in spec.steps:
        # An op takes the results of the steps it needs and of any ancestor its templates read.
        referenced = set()
        for _, text in template_strings(step.input):
            referenced |= analyze(text, set(spec.params), step_ids).steps
        upstream = sorted(set(step.needs) | (referenced & ancestors(graph, step.id)))
        plugin = registry[step.plugin]
        op = step_op(spec, step, plugin, plugin.actions[step.action], upstream, lineage[step.id])
        ops.append(op)
        # Op definitions must be unique across the code location, so each is named after its job; in the
        # job's graph (events, UI, step keys) the node keeps the step's own name.
        node = dg.NodeInvocation(op.name, alias=dagster_name(step.id))
        dependencies[node] = {dagster_name(u): dg.DependencyDefinition(dagster_name(u)) for u in upstream}
    metadata: dict[str, Any] = {"workflow": spec.name, "steps": len(spec.steps)}
    if source:
        metadata["source"] = dg.MetadataValue.path(str(source))
    return dg.GraphDefinition(
        name=job_name(spec), node_defs=ops, dependencies=dependencies, description=spec.description
    ).to_job(
        name=job_name(spec),
        description=spec.description or f"workflow {spec.name}",
        tags={**spec.tags, WORKFLOW_TAG: spec.name},
        metadata=metadata,
        resource_defs={**service_resources(), PARAMS_RESOURCE: _params_resource(spec.params)},
        executor_def=dg.multiprocess_executor if spec.executor == "multiprocess" else dg.in_process_executor,
        config=_partitioned_config(spec),
    )


def _partitioned_config(spec: WorkflowSpec) -> dg.PartitionedConfig | None:
    """Daily partitions: the partition's date becomes the param, so a date range is a Dagster backfill."""
    if spec.partitions is None:
        return None
    partitions = spec.partitions
    return dg.PartitionedConfig(
        partitions_def=workflow_partitions(spec),
        run_config_for_partition_key_fn=lambda key: params_run_config({partitions.param: key}),
    )


_PARAM_CONFIG_TYPES = {"string": str, "integer": int, "number": float, "boolean": bool}


def _params_resource(params: Mapping[str, ParamSpec]) -> dg.ResourceDefinition:
    schema = {}
    for name, param in params.items():
        config_type = _PARAM_CONFIG_TYPES.get(param.type, dg.Any)
        if param.default is None:
            schema[name] = dg.Field(config_type, is_required=True, description=param.description)
        else:
            schema[name] = dg.Field(config_type, default_value=param.default, description=param.description)
    return dg.ResourceDefinition(
        resource_fn=lambda init: dict(init.resource_config or {}),
        config_schema=schema,
        description="the workflow's declared params",
    )
