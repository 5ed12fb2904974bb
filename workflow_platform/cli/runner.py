"""`wfp run`: execute one workflow through Dagster on a persistent instance, with live step progress.

The services come from the environment when WFP_* endpoints are set, else from the stack started with
`wfp stack up`, else from an embedded stack started for this run and stopped after it. See `services`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import DagsterEventType

from workflow_platform.instance.database import instance_environment
from workflow_platform.language.spec import WorkflowSpec, dagster_name
from workflow_platform.orchestration.catalog import workflow_files, workflows_dirs
from workflow_platform.orchestration.job import build_job
from workflow_platform.orchestration.partitions import partition_params
from workflow_platform.orchestration.step_status import StepStatus, apply_step_event
from workflow_platform.orchestration.workflow_run import params_run_config
from workflow_platform.settings import ServiceSettings, admin_dsn, endpoints_configured, wfp_home

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class WorkflowNotFound(Exception):
    pass


def resolve_workflow(target: str) -> Path:
    """A workflow.json path, a folder holding one, or the name of a workflow in WORKFLOWS_DIR."""
    path = Path(target)
    if path.is_file():
        return path.resolve()
    if (path / "workflow.json").is_file():
        return (path / "workflow.json").resolve()
    directories = workflows_dirs()
    for directory in directories:
        if (directory / target / "workflow.json").is_file():
            return (directory / target / "workflow.json").resolve()

    for candidate in workflow_files(directories):
        with contextlib.suppress(ValueError, OSError):
            if json.loads(candidate.read_text()).get("name") == target:
                return candidate.resolve()
    known = ", ".join(p.parent.name for p in workflow_files(directories)) or "none"
    where = os.pathsep.join(map(str, directories))
    raise WorkflowNotFound(f"no workflow file, folder or name '{target}' (workflows in {where}: {known})")


@contextlib.contextmanager
def services(log: Callable[[str], None]) -> Iterator[dict[str, str]]:
    """The WFP_* environment of the services to use.

    A command never stops a service it did not start. With a stack recorded in WFP_HOME/stack (`wfp stack up`),
    the command uses it; a service of it that died is restarted (on its old ports when free) and left running
    afterwards: it belongs to that stack, which `wfp stack down` stops. Only a stack the command started from
    nothing is stopped when it ends.
    """
    if endpoints_configured():
        yield {}
        return
    from workflow_platform.stack import EmbeddedStack

    state_dir = wfp_home() / "stack"
    running = EmbeddedStack.attach(state_dir)
    if running is not None:
        log(f"using the embedded stack started by `wfp stack up` ({state_dir})")
        yield running.env
        return
    stack = EmbeddedStack(state_dir)
    if stack.manifest_path.exists():
        log(f"restarting the services of the embedded stack ({state_dir}) that are not running ...")
    else:
        log("starting the embedded stack (PostgreSQL, NATS JetStream, S3, Pathway) ...")
    started = time.perf_counter()
    stack.start()
    seconds = time.perf_counter() - started
    if stack.recorded:
        restarted = ", ".join(stack.started) or "none"
        log(
            f"restarted {restarted} in {seconds:.1f} s; left running with the stack (`wfp stack down` stops it)"
        )
        yield stack.env
        return
    log(f"stack ready in {seconds:.1f} s")
    try:
        yield stack.env
    finally:
        stack.stop_started()


@contextlib.contextmanager
def platform_environment(log: Callable[[str], None]) -> Iterator[dict[str, str]]:
    """The services (see `services`) and the platform's Dagster instance, in os.environ while it lasts: what
    `wfp run` and `wfp backfill` record their runs in, the same instance as `wfp up`'s."""
    with (
        services(log) as service_env,
        environment(service_env),
        environment(instance_environment(admin_dsn())),  # once the services are in os.environ
    ):
        yield service_env


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class StepReport:
    status: str = "skipped"  # succeeded | failed | skipped (never ran: an upstream step failed)
    attempts: int = 0
    duration_ms: float | None = None
    result: Any = None
    error: str | None = None


@dataclass
class RunReport:
    run_id: str
    status: str
    steps: dict[str, StepReport] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "steps": {sid: vars(report) for sid, report in self.steps.items()},
            "outputs": self.outputs,
        }


DEFAULT_LOCATION_NAME = "workflows"  # the shipped workspace.yaml's


def execute(
    spec: WorkflowSpec,
    source: Path,
    params: Mapping[str, Any],
    on_event: Callable[[str, str, str], None] = lambda step, kind, detail: None,
    tags: Mapping[str, str] | None = None,
) -> RunReport:
    """Run the workflow's job in-process on the platform's instance (see `platform_environment`); report each
    step's events as they happen."""
    job = build_job(spec, source)
    run_id = str(uuid.uuid4())
    step_ids = {dagster_name(s.id): s.id for s in spec.steps}
    progress = {s.id: StepStatus() for s in spec.steps}
    params, partition = partition_params(spec, params)
    if partition is not None:
        tags = {**partition_tags(job.name), **(tags or {})}
    with dg.DagsterInstance.get() as instance:
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = job.execute_in_process(
                    run_config={**params_run_config(params), **QUIET_LOGS},
                    instance=instance,
                    run_id=run_id,
                    partition_key=partition,
                    tags=dict(tags or {}),
                    raise_on_error=False,
                )
            except Exception as error:  # invalid run config and the like: nothing ran
                outcome["error"] = error

        worker = threading.Thread(target=run, name="wfp-run")
        worker.start()
        cursor = 0
        while True:
            alive = worker.is_alive()
            records = instance.all_logs(run_id)
            for record in records[cursor:]:
                _follow(record, step_ids, progress, on_event)
            cursor = len(records)
            if not alive:
                break
            worker.join(0.1)
        if "error" in outcome:
            raise outcome["error"]
        result = outcome["result"]
        steps = {s.id: _step_report(progress[s.id], result, dagster_name(s.id)) for s in spec.steps}
        return RunReport(run_id, "SUCCESS" if result.success else "FAILURE", steps)


def partition_tags(job_name: str) -> dict[str, str]:
    """What Dagster's partitions page counts a run by, beyond its partition: the job's partition set and the
    repository of the code location that shows it (the one `wfp up` and `dagster dev` load from workspace.yaml).
    Without them a day that `wfp run` or `wfp backfill` ran still shows as missing in the UI."""
    from dagster._core.storage.tags import PARTITION_SET_TAG, REPOSITORY_LABEL_TAG

    return {
        PARTITION_SET_TAG: f"{job_name}_partition_set",
        REPOSITORY_LABEL_TAG: f"__repository__@{workspace_location_name()}",
    }


def workspace_location_name() -> str:
    """The code location name the project's workspace.yaml gives (./workspace.yaml, else the checkout's)."""
    import yaml

    for workspace in (
        Path.cwd() / "workspace.yaml",
        Path(__file__).resolve().parents[2] / "workspace.yaml",
    ):
        with contextlib.suppress(OSError, yaml.YAMLError, AttributeError, TypeError):
            for entry in (yaml.safe_load(workspace.read_text()) or {}).get("load_from") or []:
                module = entry.get("python_module")
                if isinstance(module, dict):
                    return module.get("location_name") or module["module_name"]
    return DEFAULT_LOCATION_NAME


# What `on_event` hears of, by the event that says it.
_PROGRESS = {
    DagsterEventType.STEP_START: "start",
    DagsterEventType.STEP_RESTARTED: "start",
    DagsterEventType.STEP_SUCCESS: "success",
    DagsterEventType.STEP_UP_FOR_RETRY: "retry",
    DagsterEventType.STEP_FAILURE: "failure",
}


def _follow(
    record: Any, step_ids: Mapping[str, str], progress: dict[str, StepStatus], on_event: Callable
) -> None:
    """Apply a step's event to its status, and tell `on_event` of a start, success, retry or failure."""
    event = record.dagster_event
    if event is None or event.step_key not in step_ids:
        return
    step_id = step_ids[event.step_key]
    step = progress[step_id]
    apply_step_event(step, event, record.timestamp)
    kind = _PROGRESS.get(event.event_type)
    if kind == "start":
        on_event(step_id, kind, f"attempt {step.attempts}" if step.attempts > 1 else "")
    elif kind == "success":
        on_event(step_id, kind, f"{step.duration_ms:.0f} ms")
    elif kind == "retry":
        wait_s = event.event_specific_data.seconds_to_wait or 0
        on_event(step_id, kind, f"{step.error} — retrying in {wait_s:g} s")
    elif kind == "failure":
        on_event(step_id, kind, step.error)


def _step_report(step: StepStatus, result: Any, node: str) -> StepReport:
    """A step as the run ended; one that never started is skipped (an upstream step failed)."""
    status = "skipped" if step.status == "pending" else step.status
    value = result.output_for_node(node) if status == "succeeded" else None
    return StepReport(status, step.attempts, step.duration_ms, value, step.error)


def download_outputs(spec: WorkflowSpec, report: RunReport, outputs_dir: Path) -> list[str]:
    """Copy the objects the run stored (minio putObject results) into the workflow's outputs/ folder."""
    from workflow_platform.resources.object_store import ObjectStoreResource

    written = [
        report.steps[s.id].result
        for s in spec.steps
        if s.plugin == "minio" and s.action == "putObject" and report.steps[s.id].status == "succeeded"
    ]
    if not written:
        return []
    store = ObjectStoreResource.from_settings(ServiceSettings())
    paths = []
    for item in written:
        # outputs/<workflow>/result.json lands as <workflow folder>/outputs/result.json
        key = item["key"].removeprefix("outputs/").removeprefix(f"{spec.name}/")
        target = (outputs_dir / key).resolve()
        if outputs_dir.resolve() not in target.parents:
            continue  # a key with '..' never writes outside outputs/
        target.parent.mkdir(parents=True, exist_ok=True)
        store.client().fget_object(item["bucket"], item["key"], str(target))
        paths.append(str(target))
    return paths
