"""The op that runs one workflow step: render the step's input templates with the results of upstream steps
(Dagster inputs), validate the rendered input with the action's model, call the plugin with its resource, and
report what it touched as asset events. A failed step fails the run; Dagster skips its dependents and still runs
independent branches.
"""

import functools
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from pydantic import ValidationError

from workflow_platform.language.spec import StepSpec, WorkflowSpec, dagster_name, job_name
from workflow_platform.language.templates import NOW, TemplateAnalysis, TemplateError, render
from workflow_platform.language.validate import pydantic_problems
from workflow_platform.orchestration.assets import StepLineage, asset_events
from workflow_platform.orchestration.object_links import object_url
from workflow_platform.orchestration.workflow_run import (
    PARAMS_RESOURCE,
    STEP_TAG,
    TRIGGER_TAG,
    no_batch_message,
    template_reads,
)
from workflow_platform.plugins import Action, ActionError, ActionOutput, Plugin, StepContext

PREVIEW_CHARS = 4000

# What a step hands its dependents: the action's result, a JSON value (actions return what `jsonable` makes of
# their clients' answers). Named, so the UI shows what flows along each edge and a plugin returning something
# else fails its step at once instead of a dependent failing to render it.
STEP_RESULT = dg.DagsterType(
    name="StepResult",
    description="a step's result: a JSON value (object, array, string, number, boolean or null)",
    type_check_fn=lambda _context, value: isinstance(
        value, dict | list | str | int | float | bool | type(None)
    ),
)
CANCEL_GRACE_S = 5.0  # how long a cancelled action gets to end before the step fails without it


def step_op(
    spec: WorkflowSpec,
    step: StepSpec,
    plugin: Plugin,
    action: Action,
    upstream: list[str],
    lineage: StepLineage,
) -> dg.OpDefinition:
    """The op of `step`, taking the results of the `upstream` steps as inputs."""
    input_steps = {dagster_name(u): u for u in upstream}
    resource_keys = {PARAMS_RESOURCE, *action.uses} | (
        {plugin.resource_key} if plugin.resource_key else set()
    )
    reads = template_reads(step)  # parsed once, when the job is built
    needs_batch = "trigger" in reads.roots

    @dg.op(
        name=f"{job_name(spec)}__{dagster_name(step.id)}",
        description=step.description or f"{step.plugin}.{step.action} ({action.description})",
        ins={name: dg.In(STEP_RESULT) for name in input_steps},
        out=dg.Out(STEP_RESULT),
        required_resource_keys=resource_keys,
        retry_policy=_retry_policy(spec, step),
        tags={"plugin": step.plugin, "action": step.action, STEP_TAG: step.id, **step.tags},
    )
    def run_step(context: dg.OpExecutionContext, **results: Any):
        if needs_batch and TRIGGER_TAG not in context.run.tags:
            raise dg.Failure(
                f"step {step.id}: this run has no batch of rows. {no_batch_message(spec)}",
                allow_retries=False,
            )
        steps = {input_steps[name]: {"result": value} for name, value in results.items()}
        template_context, step_context = _contexts(context, spec, step, action, reads, steps)
        parsed = _render_input(step, action, template_context)
        resource = getattr(context.resources, plugin.resource_key) if plugin.resource_key else None
        started = time.perf_counter()
        output = _call(step, action, resource, parsed, step_context)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        links = _link_written_objects(output)
        # What the step touched, recorded against the workflow's stable assets (assets.py), in the run's day.
        partition = template_context["params"].get(spec.partitions.param) if spec.partitions else None
        for event in asset_events(lineage, output.touched, partition):
            context.log_event(event)
        yield dg.Output(output.value, metadata=_output_metadata(output, links, elapsed_ms))

    return run_step


def _contexts(
    context: dg.OpExecutionContext,
    spec: WorkflowSpec,
    step: StepSpec,
    action: Action,
    reads: TemplateAnalysis,
    steps: dict[str, Any],
) -> tuple[dict[str, Any], StepContext]:
    """What the step's templates render with (`reads`: what they use), and what its action is called with."""
    # Looking up a run's start costs a storage query: only steps whose templates use it pay for it ('now' in the
    # date filter is the start of the run's root).
    root_id = execution_key(context.run)
    execution_started: Callable[[], str] = functools.cache(lambda: _run_started_at(context, root_id))
    template_context = {
        "steps": steps,
        "params": dict(getattr(context.resources, PARAMS_RESOURCE)),
        "run": {
            "id": context.run_id,
            "root_id": root_id,
            "started_at": _run_started_at(context, context.run_id)
            if "started_at" in reads.run_fields
            else None,
            "job_name": context.job_name,
        },
        "workflow": {"name": spec.name, "description": spec.description},
        "trigger": json.loads(context.run.tags.get(TRIGGER_TAG, "{}")),
        NOW: execution_started() if "date" in reads.filters else None,
    }
    timeout_ms = spec.timeout_for(step)
    step_context = StepContext(
        run_id=context.run_id,
        step_id=step.id,
        workflow=spec.name,
        execution_key=root_id,
        execution_started=execution_started,
        timeout_s=timeout_ms / 1000 if timeout_ms else None,
        resources={key: getattr(context.resources, key) for key in action.uses},
    )
    return template_context, step_context


def _link_written_objects(output: ActionOutput) -> dict[str, dg.MetadataValue]:
    """The API links of the objects the step wrote, by key; each is also added to its touched entry's metadata."""
    links = {}
    for touched in output.touched:
        if touched.wrote and (link := _object_link(touched.metadata)):
            touched.metadata["link"] = links[touched.metadata["key"]] = dg.MetadataValue.url(link)
    return links


def _output_metadata(
    output: ActionOutput, links: dict[str, dg.MetadataValue], elapsed_ms: float
) -> dict[str, Any]:
    # The UI lists metadata in this order: what a person reads first, then the links, then the raw result.
    metadata: dict[str, Any] = {}
    if output.preview_markdown:
        metadata["preview"] = dg.MetadataValue.md(output.preview_markdown)
    if len(links) == 1:
        metadata["link"] = next(iter(links.values()))
    else:
        metadata |= {f"link: {key}": url for key, url in links.items()}
    return metadata | {"duration_ms": elapsed_ms, **_preview(output.value)}


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
