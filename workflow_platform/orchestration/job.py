"""WorkflowSpec -> Dagster job (one op per step) and schedule (DESIGN §1, §6).

Each op renders its step's input templates with the results of upstream steps (Dagster inputs), validates the
rendered input with the action's model, calls the plugin with its resource, and reports what it touched as
asset events. A failed step fails the run; Dagster skips its dependents and still runs independent branches.
"""

import functools
import json
import os
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import ValidationError

from workflow_platform.language.spec import (
    ParamSpec,
    StepSpec,
    TriggerSpec,
    WorkflowSpec,
    dagster_name,
    job_name,
)
from workflow_platform.language.templates import NOW, TemplateAnalysis, TemplateError, analyze, render
from workflow_platform.language.validate import ancestors, pydantic_problems, template_strings
from workflow_platform.orchestration.assets import (
    StepLineage,
    asset_events,
    workflow_lineage,
    workflow_partitions,
)
from workflow_platform.orchestration.object_links import object_url
from workflow_platform.orchestration.partitions import previous_day
from workflow_platform.orchestration.row_cursor import (
    RowCursor,
    batch_payload,
    count_rows,
    next_batches,
    start_at_latest,
)
from workflow_platform.plugins import Action, ActionError, ActionOutput, Plugin, StepContext, plugin_registry
from workflow_platform.resources import service_resources

WORKFLOW_TAG = "wfp/workflow"
STEP_TAG = "wfp/step"
TRIGGER_TAG = "wfp/trigger"
PARAMS_RESOURCE = "workflow_params"
PREVIEW_CHARS = 4000
CANCEL_GRACE_S = 5.0  # how long a cancelled action gets to end before the step fails without it


def build_job(spec: WorkflowSpec, source: Path | None = None, registry: Mapping[str, Plugin] | None = None):
    """The Dagster job of a validated workflow (validate first: this assumes a valid spec)."""
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
        op = _step_op(spec, step, plugin, plugin.actions[step.action], upstream, lineage[step.id])
        ops.append(op)
        # Op definitions must be unique across the code location, so each is named after its job; in the
        # job's graph (events, UI, step keys) the node keeps the step's own name.
        node = dg.NodeInvocation(op.name, alias=dagster_name(step.id))
        dependencies[node] = {dagster_name(u): dg.DependencyDefinition(dagster_name(u)) for u in upstream}
    resources: dict[str, Any] = {**service_resources(), PARAMS_RESOURCE: _params_resource(spec.params)}
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
        resource_defs=resources,
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


def build_schedule(spec: WorkflowSpec, job: dg.JobDefinition) -> dg.ScheduleDefinition | None:
    if spec.schedule is None:
        return None
    schedule = spec.schedule
    common = {
        "name": f"{job.name}_schedule",
        "cron_schedule": schedule.cron,
        "execution_timezone": schedule.timezone,
        "job": job,
        "default_status": dg.DefaultScheduleStatus.RUNNING,
        "description": f"{spec.name} on '{schedule.cron}' ({schedule.timezone})",
    }
    if spec.partitions is None:
        return dg.ScheduleDefinition(
            run_config=params_run_config(schedule.params) if schedule.params else None, **common
        )
    param = spec.partitions.param

    def previous_day_run(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        # Each tick reports on the day before it, in the schedule's timezone; the run key makes a tick
        # evaluated twice launch one run.
        tick = context.scheduled_execution_time or datetime.now(ZoneInfo(schedule.timezone))
        day = previous_day(tick.astimezone(ZoneInfo(schedule.timezone)))
        return dg.RunRequest(
            run_key=day, partition_key=day, run_config=params_run_config({**schedule.params, param: day})
        )

    return dg.ScheduleDefinition(execution_fn=previous_day_run, **common)


def rows_batch(dsn: str, trigger: TriggerSpec, after: int, through: int) -> dict[str, Any]:
    """The trigger payload of a batch named by hand (`wfp run --rows AFTER:THROUGH`), its rows counted."""
    return batch_payload(trigger, after, through, count_rows(dsn, trigger, after, through))


def step_reads_trigger(step: StepSpec) -> bool:
    """Whether the step's templates read `trigger`: its run needs a batch (the sensor's, or one named by hand)."""
    return "trigger" in _template_reads(step).roots


def _template_reads(step: StepSpec) -> TemplateAnalysis:
    """What the step's templates read (variables, run fields, filters), from the template parser."""
    reads = TemplateAnalysis()
    for _, text in template_strings(step.input):
        found = analyze(text, set(), set())
        reads.roots |= found.roots
        reads.run_fields |= found.run_fields
        reads.filters |= found.filters
    return reads


def reads_trigger(spec: WorkflowSpec) -> bool:
    return any(step_reads_trigger(step) for step in spec.steps)


def no_batch_message(spec: WorkflowSpec) -> str:
    table = spec.trigger.table if spec.trigger else "its table"
    return (
        f"{spec.name} works on batches of new rows of {table}: its sensor {job_name(spec)}_on_new_rows launches "
        f"its runs (wfp up, or dagster-daemon). To run one batch by hand: wfp run {spec.name} --rows AFTER:THROUGH, "
        f'or give the run the tag {TRIGGER_TAG} = {{"after": AFTER, "through": THROUGH}}'
    )


def _skip_reason(trigger: TriggerSpec, state: RowCursor, previous: RowCursor | None = None) -> str:
    if state.starting and not state.waiting:
        return (
            f"{trigger.table} is empty: startAfter latest takes the first rows loaded into it as history and "
            f"processes the rows committed after them (startAfter 0 processes every row)"
        )
    if previous is not None and previous.starting and not state.starting:
        return (
            f"started after the first rows loaded into {trigger.table}: rows with {trigger.column} > "
            f"{state.after} will be processed"
        )
    if state.waiting:
        return (
            f"waiting for {len(state.waiting)} transaction(s) writing {trigger.table} to end: rows with "
            f"{trigger.column} <= {state.pending} are processed once no transaction can still commit one below it"
        )
    return f"no rows in {trigger.table} with {trigger.column} > {state.after}"


def build_sensor(spec: WorkflowSpec, job: dg.JobDefinition) -> dg.SensorDefinition | None:
    """One run per batch of new rows of the trigger table. A batch only reaches up to a settled value (see
    row_cursor): no row is skipped when transactions commit out of id order, at the cost that a transaction
    writing the table and left open holds back later batches until it ends. Run keys name the rows, so a batch
    is never launched twice (Dagster also resumes a tick interrupted after its runs were reserved)."""
    if spec.trigger is None:
        return None
    trigger = spec.trigger

    def new_rows(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        dsn = os.environ["WFP_PG_DSN"]
        if not context.cursor and trigger.startAfter == "latest":
            start = start_at_latest(dsn, trigger)
            if start.starting:
                return dg.SensorResult(skip_reason=_skip_reason(trigger, start), cursor=start.dump())
            return dg.SensorResult(
                skip_reason=f"started: rows of {trigger.table} with {trigger.column} > {start.after} will be processed",
                cursor=start.dump(),
            )
        previous = (
            RowCursor.parse(context.cursor) if context.cursor else RowCursor.start(int(trigger.startAfter))
        )
        state, batches = next_batches(dsn, trigger, previous)
        if not batches:
            return dg.SensorResult(skip_reason=_skip_reason(trigger, state, previous), cursor=state.dump())
        requests = [
            dg.RunRequest(
                # The run key names the rows: a tick evaluated again from the same cursor (a daemon restarted
                # mid-tick) makes the same keys, and Dagster launches a key once.
                run_key=f"{trigger.table}:{batch['after']}-{batch['through']}",
                tags={TRIGGER_TAG: json.dumps(batch)},
            )
            for batch in batches
        ]
        return dg.SensorResult(run_requests=requests, cursor=state.dump())

    return dg.SensorDefinition(
        name=f"{job.name}_on_new_rows",
        evaluation_fn=new_rows,
        job=job,
        minimum_interval_seconds=trigger.intervalSeconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"runs {spec.name} for each batch of up to {trigger.batchSize} new rows of {trigger.table}",
    )


def params_run_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """Run config that sets workflow params: what `--param k=v`, schedules and the API produce."""
    return {"resources": {PARAMS_RESOURCE: {"config": dict(values)}}}


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


def _retry_policy(spec: WorkflowSpec, step: StepSpec) -> dg.RetryPolicy | None:
    retry = spec.retry_for(step)
    if retry is None or retry.maxAttempts <= 1:
        return None
    return dg.RetryPolicy(
        max_retries=retry.maxAttempts - 1,
        delay=retry.delayMs / 1000,
        backoff=dg.Backoff.EXPONENTIAL if retry.backoff == "exponential" else None,
        jitter=dg.Jitter.FULL if retry.jitter else None,
    )


def _step_op(
    spec: WorkflowSpec,
    step: StepSpec,
    plugin: Plugin,
    action: Action,
    upstream: list[str],
    lineage: StepLineage,
):
    input_steps = {dagster_name(u): u for u in upstream}
    timeout_ms = spec.timeout_for(step)
    resource_keys = {PARAMS_RESOURCE, *action.uses} | (
        {plugin.resource_key} if plugin.resource_key else set()
    )
    # Looking up a run's start costs a storage query: only steps whose templates use it pay for it ('now' in the
    # date filter is the start of the run's root).
    reads = _template_reads(step)
    reads_start_time = "started_at" in reads.run_fields
    reads_now = "date" in reads.filters
    needs_batch = "trigger" in reads.roots

    @dg.op(
        name=f"{job_name(spec)}__{dagster_name(step.id)}",
        description=step.description or f"{step.plugin}.{step.action} ({action.description})",
        ins={name: dg.In(dg.Any) for name in input_steps},
        out=dg.Out(dg.Any),
        required_resource_keys=resource_keys,
        retry_policy=_retry_policy(spec, step),
        tags={"plugin": step.plugin, "action": step.action, STEP_TAG: step.id, **step.tags},
    )
    def step_op(context: dg.OpExecutionContext, **results: Any):
        if needs_batch and TRIGGER_TAG not in context.run.tags:
            raise dg.Failure(
                f"step {step.id}: this run has no batch of rows. {no_batch_message(spec)}",
                allow_retries=False,
            )
        root_id = execution_key(context.run)
        execution_started = functools.cache(lambda: _run_started_at(context, root_id))
        template_context = {
            "steps": {input_steps[name]: {"result": value} for name, value in results.items()},
            "params": dict(getattr(context.resources, PARAMS_RESOURCE)),
            "run": {
                "id": context.run_id,
                "root_id": root_id,
                "started_at": _run_started_at(context, context.run_id) if reads_start_time else None,
                "job_name": context.job_name,
            },
            "workflow": {"name": spec.name, "description": spec.description},
            "trigger": json.loads(context.run.tags.get(TRIGGER_TAG, "{}")),
            NOW: execution_started() if reads_now else None,
        }
        parsed = _render_input(step, action, template_context)
        resource = getattr(context.resources, plugin.resource_key) if plugin.resource_key else None
        step_context = StepContext(
            run_id=context.run_id,
            step_id=step.id,
            workflow=spec.name,
            execution_key=root_id,
            execution_started=execution_started,
            timeout_s=timeout_ms / 1000 if timeout_ms else None,
            resources={key: getattr(context.resources, key) for key in action.uses},
        )
        started = time.perf_counter()
        output = _call(step, action, resource, parsed, step_context)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        links = {}
        for touched in output.touched:
            if touched.wrote and (link := _object_link(touched.metadata)):
                touched.metadata["link"] = links[touched.metadata["key"]] = dg.MetadataValue.url(link)
        # What the step touched, recorded against the workflow's stable assets (assets.py), in the run's day.
        partition = template_context["params"].get(spec.partitions.param) if spec.partitions else None
        for event in asset_events(lineage, output.touched, partition):
            context.log_event(event)
        # The UI lists metadata in this order: what a person reads first, then the links, then the raw result.
        metadata: dict[str, Any] = {}
        if output.preview_markdown:
            metadata["preview"] = dg.MetadataValue.md(output.preview_markdown)
        if len(links) == 1:
            metadata["link"] = next(iter(links.values()))
        else:
            metadata |= {f"link: {key}": url for key, url in links.items()}
        metadata |= {"duration_ms": elapsed_ms, **_preview(output.value)}
        yield dg.Output(output.value, metadata=metadata)

    return step_op


def _object_link(metadata: Mapping[str, Any]) -> str | None:
    """The API link to an object a step wrote (its metadata names `bucket` and `key`), never a presigned URL:
    run metadata is readable by whoever opens the UI, and a presigned URL carries credentials (object_links.py)."""
    bucket, key = metadata.get("bucket"), metadata.get("key")
    return object_url(bucket, key) if isinstance(bucket, str) and isinstance(key, str) else None


def execution_key(run: dg.DagsterRun) -> str:
    """The run's root: the first run of a chain of re-executions ("Re-execute" in the UI, run retries), or the
    run itself. Side-effect keys derive from it, so re-executing a run writes what it wrote, not a second copy."""
    return run.root_run_id or run.run_id


def _run_started_at(context: dg.OpExecutionContext, run_id: str) -> str:
    # The run's creation time, not the clock: a retried step renders 'now' the same way as its first attempt.
    record = context.instance.get_run_record_by_id(run_id)
    created = record.create_timestamp if record else datetime.now(UTC)
    return (created if created.tzinfo else created.replace(tzinfo=UTC)).isoformat()


def _render_input(step: StepSpec, action: Action, template_context: dict[str, Any]) -> Any:
    try:
        rendered = render(step.input, template_context)
    except TemplateError as error:
        raise dg.Failure(f"step {step.id}: template error in input: {error}", allow_retries=False) from None
    try:
        return action.input_model.model_validate(rendered)
    except ValidationError as error:
        problems = "; ".join(p.render() for p in pydantic_problems(error, rendered, "/input"))
        raise dg.Failure(
            f"step {step.id}: the rendered input is not valid for {step.plugin}.{step.action}: {problems}",
            metadata={"input": dg.MetadataValue.json(_truncate_json(rendered))},
            allow_retries=False,
        ) from None


def _call(
    step: StepSpec, action: Action, resource: Any, parsed: Any, step_context: StepContext
) -> ActionOutput:
    what = f"step {step.id} ({step.plugin}.{step.action})"
    try:
        return _interruptible(action, resource, parsed, step_context)
    except ActionError as error:
        raise dg.Failure(f"{what}: {error}", allow_retries=False) from None
    except dg.Failure:
        raise
    except Exception as error:  # a service failure: fail with its message; the retry policy applies
        message = str(error).strip() or type(error).__name__
        raise dg.Failure(f"{what} failed: {type(error).__name__}: {message}") from error


def _interruptible(action: Action, resource: Any, parsed: Any, step_context: StepContext) -> ActionOutput:
    """The action runs in a thread so that this one stays interruptible: when the step times out or its run is
    terminated (SIGINT), the work its resources have in flight is cancelled (`resource.cancel()`: a PostgreSQL
    query, an HTTP call, a NATS request) and the thread is given CANCEL_GRACE_S to end, so a failed step leaves
    no work running. Actions also pass the timeout to their client (statement_timeout, HTTP timeout,
    asyncio.wait_for), but an HTTP timeout bounds each read, not the call."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"wfp-{step_context.step_id}")
    future = pool.submit(action.fn, resource, parsed, step_context)
    try:
        return future.result(timeout=step_context.timeout_s)
    except FutureTimeout:
        if future.done():  # the action's own timeout (TimeoutError is FutureTimeout), not the step's
            raise
        message = f"step {step_context.step_id} timed out after {step_context.timeout_s:g} s"
        if not _cancel(future, [resource, *step_context.resources.values()]):
            message += f"; its action was cancelled but still runs after {CANCEL_GRACE_S:g} s"
        raise dg.Failure(message) from None
    except BaseException:
        if not future.done():  # interrupted: the run is being terminated
            _cancel(future, [resource, *step_context.resources.values()])
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _cancel(future: Future, resources: list[Any]) -> bool:
    """Cancel what the step's resources have in flight; whether its action then ended within CANCEL_GRACE_S."""
    for resource in {id(r): r for r in resources if r is not None}.values():
        cancel = getattr(resource, "cancel", None)
        if callable(cancel):
            cancel()
    done, _ = wait([future], timeout=CANCEL_GRACE_S)
    return bool(done)


def _truncate_json(value: Any) -> Any:
    text = json.dumps(value, default=str)
    return value if len(text) <= PREVIEW_CHARS else {"preview": text[:PREVIEW_CHARS] + "..."}


LONG_STRING_CHARS = 200


def _abbreviated(value: Any) -> Any:
    """The value with every long string cut to its start and its length (a report's HTML, a base64 body)."""
    if isinstance(value, str) and len(value) > LONG_STRING_CHARS:
        return f"{value[:80]}... ({len(value):,} characters)"
    if isinstance(value, dict):
        return {key: _abbreviated(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_abbreviated(item) for item in value]
    return value


def _preview(value: Any) -> dict[str, dg.MetadataValue]:
    text = json.dumps(value, default=str)
    if len(text) <= PREVIEW_CHARS:
        return {
            "result": dg.MetadataValue.json(value if isinstance(value, dict | list) else {"value": value})
        }
    short = _abbreviated(json.loads(text))
    if isinstance(short, dict | list) and len(json.dumps(short)) <= PREVIEW_CHARS:
        return {"result_outline": dg.MetadataValue.json(short), "result_chars": len(text)}
    return {"result_preview": dg.MetadataValue.text(text[:PREVIEW_CHARS] + "..."), "result_chars": len(text)}
