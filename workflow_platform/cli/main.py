"""`wfp`: validate, run and inspect workflows; start the embedded stack."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from workflow_platform.language.problems import Problem
from workflow_platform.settings import PlatformSettings, wfp_home

if TYPE_CHECKING:  # the CLI starts fast: models and dagster load when a command needs them
    from workflow_platform.language.spec import WorkflowSpec

EXIT_RUN_FAILED = 1
EXIT_INVALID = 2


_TERMINALS: dict[int, TextIO] = {}


def _terminal() -> TextIO:
    """The CLI's own stderr, kept aside: while a run executes in this process, Dagster captures the process's
    stdout and stderr into the run's compute logs (the UI's stdout/stderr tabs); progress belongs on the
    terminal, not in them."""
    try:
        fd = sys.stderr.fileno()
    except (OSError, ValueError):  # not a file (a test runner's buffer): nothing redirects it
        return sys.stderr
    if fd not in _TERMINALS:
        _TERMINALS[fd] = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")
    return _TERMINALS[fd]


def _err(message: str) -> None:
    click.echo(message, file=_terminal())


def _expand(paths: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = (
                [path / "workflow.json"]
                if (path / "workflow.json").is_file()
                else sorted(path.glob("*/workflow.json"))
            )
            files.extend(found or sorted(path.glob("*.json")))
        else:
            files.append(path)
    return files


def _report_problems(problems: list[Problem]) -> None:
    for problem in problems:
        _err(problem.render())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """workflow-platform: business workflows (workflow.json) run as Dagster jobs on real services."""


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="print the problems as JSON")
def validate(paths: tuple[str, ...], as_json: bool) -> None:
    """Check workflow files (or folders of them); exit 2 listing PATH:POINTER: message for every problem."""
    from workflow_platform.orchestration.catalog import check_file

    everything: list[Problem] = []
    for path in _expand(paths):
        spec, problems = check_file(path)
        everything.extend(problems)
        if spec is not None and not as_json:
            click.echo(f"{path}: ok ({spec.name}, {len(spec.steps)} steps)")
    if as_json:
        click.echo(
            json.dumps({"valid": not everything, "problems": [p.as_dict() for p in everything]}, indent=2)
        )
    else:
        _report_problems(everything)
    if everything:
        sys.exit(EXIT_INVALID)


@main.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="write to a file")
def schema(output: str | None) -> None:
    """Print the JSON Schema of workflow.json (with every plugin action's input)."""
    from workflow_platform.orchestration.catalog import workflow_schema

    text = json.dumps(workflow_schema(), indent=2)
    if output:
        Path(output).write_text(text + "\n")
    else:
        click.echo(text)


@main.command(name="list")
def list_workflows() -> None:
    """The workflows in WORKFLOWS_DIR and whether they are valid."""
    from workflow_platform.orchestration.catalog import check_file, workflow_files, workflows_dirs

    for path in workflow_files(workflows_dirs()):
        spec, problems = check_file(path)
        state = f"{spec.name} ({len(spec.steps)} steps)" if spec else f"INVALID ({len(problems)} problems)"
        click.echo(f"{path.parent.name:32} {state}")


def _parse_params(values: tuple[str, ...], declared: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep:
            raise click.BadParameter(f"'{item}' is not NAME=VALUE", param_hint="--param")
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise click.BadParameter(f"unknown param '{name}' (declared: {known})", param_hint="--param")
        kind = declared[name].type
        if kind == "string":
            params[name] = raw
            continue
        try:
            params[name] = json.loads(raw)
        except ValueError:
            raise click.BadParameter(f"{name}: '{raw}' is not a valid {kind}", param_hint="--param") from None
    return params


_SYMBOLS = {"start": "▶", "success": "✔", "retry": "↻", "failure": "✘"}


def _load_workflow(target: str) -> tuple[Path, WorkflowSpec]:
    """The workflow a command names (file, folder or name), valid; else exit 2 saying why."""
    from workflow_platform.cli.runner import WorkflowNotFound, resolve_workflow
    from workflow_platform.orchestration.catalog import check_file

    try:
        path = resolve_workflow(target)
    except WorkflowNotFound as error:
        _err(f"error: {error}")
        sys.exit(EXIT_INVALID)
    spec, problems = check_file(path)
    if spec is None:
        _report_problems(problems)
        _err(f"{path}: invalid workflow, nothing was run")
        sys.exit(EXIT_INVALID)
    return path, spec


def _batch_bounds(spec: WorkflowSpec, rows: str | None) -> tuple[int, int] | None:
    """`--rows AFTER:THROUGH` checked against the workflow; exits 2 when a trigger workflow gets no batch."""
    from workflow_platform.orchestration.workflow_run import no_batch_message, reads_trigger

    if rows is None:
        if spec.trigger is not None and reads_trigger(spec):
            _err(f"error: {no_batch_message(spec)}; nothing was run")
            sys.exit(EXIT_INVALID)
        return None
    if spec.trigger is None:
        _err(f"error: --rows is for workflows with a trigger; {spec.name} has none; nothing was run")
        sys.exit(EXIT_INVALID)
    after, _, through = rows.partition(":")
    try:
        bounds = int(after), int(through)
    except ValueError:
        bounds = (0, -1)
    if bounds[0] >= bounds[1]:
        _err(f"error: --rows {rows}: give AFTER:THROUGH, two integers with AFTER < THROUGH; nothing was run")
        sys.exit(EXIT_INVALID)
    return bounds


@main.command()
@click.argument("target")
@click.option(
    "--param", "-p", "param_values", multiple=True, metavar="NAME=VALUE", help="set a workflow param"
)
@click.option("--json", "as_json", is_flag=True, help="end with one JSON object describing the run")
@click.option("--outputs", type=click.Path(file_okay=False), help="where to download stored objects")
@click.option(
    "--rows",
    metavar="AFTER:THROUGH",
    help="for a workflow with a trigger: the batch of rows to process (trigger column > AFTER and <= THROUGH)",
)
def run(
    target: str, param_values: tuple[str, ...], as_json: bool, outputs: str | None, rows: str | None
) -> None:
    """Run a workflow (file, folder or name) through Dagster; exit 0 success, 1 run failed, 2 invalid."""
    from workflow_platform.cli.runner import download_outputs, execute, platform_environment
    from workflow_platform.orchestration.partitions import InvalidParams
    from workflow_platform.orchestration.preflight import preflight
    from workflow_platform.orchestration.row_cursor import rows_batch
    from workflow_platform.orchestration.workflow_run import TRIGGER_TAG
    from workflow_platform.resources.postgres import PostgresResource
    from workflow_platform.settings import ServiceSettings

    path, spec = _load_workflow(target)
    params = _parse_params(param_values, spec.params)
    batch_bounds = _batch_bounds(spec, rows)

    with platform_environment(_err):
        postgres = PostgresResource.from_settings(ServiceSettings())
        with contextlib.closing(postgres):
            problems = preflight(spec, postgres, str(path))
        if problems:
            _report_problems(problems)
            _err(f"{path}: invalid workflow, nothing was run")
            sys.exit(EXIT_INVALID)

        def progress(step: str, kind: str, detail: str) -> None:
            _err(f"  {_SYMBOLS[kind]} {step}" + (f"  {detail}" if detail else ""))

        tags = {}
        if batch_bounds is not None:
            batch = rows_batch(postgres, spec.trigger, *batch_bounds)
            tags[TRIGGER_TAG] = json.dumps(batch)
            _err(
                f"batch: {batch['count']} rows of {batch['table']} with {batch['column']} in ({rows.replace(':', ', ')}]"
            )
        _err(f"running {spec.name} ({len(spec.steps)} steps)")
        try:
            report = execute(spec, path, params, progress, tags)
        except InvalidParams as error:
            _err(f"error: {error}; nothing was run")
            sys.exit(EXIT_INVALID)
        for step_id, step in report.steps.items():
            if step.status == "skipped":
                _err(f"  - {step_id}  skipped (an upstream step failed)")
        outputs_dir = Path(outputs) if outputs else path.parent / "outputs"
        try:
            report.outputs = download_outputs(spec, report, outputs_dir)
        except OSError as error:
            _err(f"warning: could not download outputs to {outputs_dir}: {error}")
    for output in report.outputs:
        _err(f"  ↓ {output}")
    _err(f"run {report.run_id}: {report.status}")
    if as_json:
        click.echo(json.dumps(report.as_dict(), default=str))
    sys.exit(0 if report.status == "SUCCESS" else EXIT_RUN_FAILED)


@main.command(name="up")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=3000, show_default=True, help="HTTP API port")
@click.option("--dagster-port", default=3001, show_default=True, help="Dagster UI port")
@click.option(
    "--launcher",
    type=click.Choice(["warm", "default", "celery"]),
    default="warm",
    show_default=True,
    help="warm: runs start in pre-forked workers (dagster.yaml's WarmRunLauncher); default: Dagster's "
    "DefaultRunLauncher, a new process per run; celery: the Celery scale-out's CeleryRunLauncher with one local "
    "worker (deploy/scale-out/celery; more workers on other hosts can join its queue)",
)
def platform_up(host: str, port: int, dagster_port: int, launcher: str) -> None:
    """Run the platform: services, Dagster webserver + daemon (schedules, sensors) and the HTTP API."""
    from workflow_platform.cli.up import UpOptions, run_platform

    try:
        run_platform(UpOptions(host, port, dagster_port, Path.cwd(), launcher), _err)
    except RuntimeError as error:
        _err(f"error: {error}")
        sys.exit(1)
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once everything has been stopped
        pass
    _err("stopped")


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("webserver_args", nargs=-1, type=click.UNPROCESSED)
def webserver(webserver_args: tuple[str, ...]) -> None:
    """dagster-webserver (same options) behind the platform's access policy: with WFP_API_TOKEN set, the Dagster
    UI asks for it; without, it refuses to listen beyond loopback. What `wfp up` and docker-compose run."""
    from workflow_platform.api.access import ListenRefused
    from workflow_platform.cli.webserver import serve

    try:
        serve(webserver_args)
    except ListenRefused as error:
        _err(f"error: {error}")
        sys.exit(1)


@main.command()
@click.option(
    "-w",
    "--workspace",
    "workspace_files",
    multiple=True,
    default=["workspace.yaml"],
    show_default=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Dagster workspace file (repeatable)",
)
@click.option("--log-level", default="info", show_default=True)
def daemon(workspace_files: tuple[str, ...], log_level: str) -> None:
    """Dagster's daemon (schedules, sensors, backfills, run queue, monitoring) with the run queue woken as soon
    as a run is queued: what `wfp up` and docker-compose run instead of `dagster-daemon run`."""
    from workflow_platform.instance.launcher.daemon import run_daemon

    run_daemon(workspace_files, log_level)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=3000, show_default=True)
@click.option(
    "-w",
    "--workspace",
    "workspace_file",
    default="deploy/workspace.yaml",
    show_default=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Dagster workspace file naming the code server (grpc_server)",
)
@click.option("-m", "--module", default="workflow_platform.definitions", show_default=True)
def api(host: str, port: int, workspace_file: str, module: str) -> None:
    """The HTTP API alone, against running Dagster services (docker-compose's `api`; `wfp up` serves it itself).
    Needs DAGSTER_PG_URL, WORKFLOWS_DIR (the last folder receives submitted workflows) and WFP_DAGSTER_UI_URL."""
    from workflow_platform.api.access import ListenRefused
    from workflow_platform.api.serve import serve_api

    try:
        serve_api(host, port, Path(workspace_file), module)
    except (ListenRefused, RuntimeError) as error:
        _err(f"error: {error}")
        sys.exit(1)


def _api_url() -> str:
    return PlatformSettings().api_url.rstrip("/")


def _api_headers() -> dict[str, str]:
    """The operator's token; `wfp status` also works with the viewer's alone."""
    settings = PlatformSettings()
    token = settings.api_token or settings.api_read_token
    return {"Authorization": f"Bearer {token}"} if token else {}


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--param", "-p", "param_values", multiple=True, metavar="NAME=VALUE", help="set a workflow param"
)
@click.option("--wait", is_flag=True, help="follow the run to its end, printing each step's status")
def submit(path: str, param_values: tuple[str, ...], wait: bool) -> None:
    """Submit a workflow file to the API (WFP_API_URL, default http://127.0.0.1:3000), like run-sample.js."""
    import requests

    document = json.loads(Path(path).read_text())
    params = dict(item.split("=", 1) for item in param_values)
    body = (
        {"workflow": document, "params": {k: _json_or_text(v) for k, v in params.items()}}
        if params
        else document
    )
    try:
        response = requests.post(f"{_api_url()}/api/workflows", json=body, headers=_api_headers(), timeout=60)
    except requests.ConnectionError:
        _err(f"error: no API at {_api_url()}: start it with `wfp up`")
        sys.exit(1)
    answer = response.json()
    if response.status_code != 201:
        _err(f"{answer.get('message', response.text)}")
        for detail in answer.get("details", []):
            _err(f"{path}:{detail['pointer']}: {detail['message']}")
        sys.exit(EXIT_INVALID if response.status_code < 500 else 1)
    click.echo(json.dumps(answer))
    if wait:
        sys.exit(_follow(answer["executionId"]))


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _follow(run_id: str) -> int:
    import time

    import requests

    shown: dict[str, str] = {}
    while True:
        execution = requests.get(
            f"{_api_url()}/api/executions/{run_id}", headers=_api_headers(), timeout=30
        ).json()
        for step_id, step in execution.get("steps", {}).items():
            if shown.get(step_id) != step["status"] and step["status"] != "pending":
                shown[step_id] = step["status"]
                detail = f"  {step['error']}" if step.get("error") else ""
                _err(f"  {step_id}: {step['status']}{detail}")
        if execution["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            _err(f"run {run_id}: {execution['status']}")
            return 0 if execution["status"] == "SUCCESS" else EXIT_RUN_FAILED
        time.sleep(0.5)


@main.command()
@click.argument("run_id")
def status(run_id: str) -> None:
    """Print an execution's status and steps (from the API)."""
    import requests

    response = requests.get(f"{_api_url()}/api/executions/{run_id}", headers=_api_headers(), timeout=30)
    if response.status_code == 404:
        _err(f"no execution '{run_id}'")
        sys.exit(EXIT_INVALID)
    if response.status_code != 200:
        _err(response.json().get("message", response.text))
        sys.exit(EXIT_INVALID if response.status_code < 500 else 1)
    execution = response.json()
    execution.pop("events", None)
    click.echo(json.dumps(execution, indent=2))


@main.command()
@click.argument("target")
@click.option("--from", "first", required=True, metavar="YYYY-MM-DD", help="first day")
@click.option("--to", "last", required=True, metavar="YYYY-MM-DD", help="last day (included)")
@click.option("--param", "-p", "param_values", multiple=True, metavar="NAME=VALUE", help="set another param")
def backfill(target: str, first: str, last: str, param_values: tuple[str, ...]) -> None:
    """Run a daily-partitioned workflow for every day of a range (e.g. regenerate last month's reports)."""
    from datetime import date, timedelta

    from workflow_platform.cli.runner import execute, platform_environment
    from workflow_platform.orchestration.partitions import InvalidParams

    try:
        start, end = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError as error:
        _err(f"error: {error}")
        sys.exit(EXIT_INVALID)
    path, spec = _load_workflow(target)
    if spec.partitions is None:
        _err(f"error: {path} has no daily partitions to backfill")
        sys.exit(EXIT_INVALID)
    params = _parse_params(param_values, spec.params)
    days = [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]
    failed = []
    with platform_environment(_err):
        for day in days:
            try:
                report = execute(spec, path, {**params, spec.partitions.param: day})
            except InvalidParams as error:
                _err(f"error: {error}")
                sys.exit(EXIT_INVALID)
            _err(f"  {day}: {report.status} (run {report.run_id})")
            if report.status != "SUCCESS":
                failed.append(day)
    _err(
        f"backfill of {len(days)} days: {len(days) - len(failed)} succeeded"
        + (f", failed: {', '.join(failed)}" if failed else "")
    )
    sys.exit(EXIT_RUN_FAILED if failed else 0)


@main.group()
def seed() -> None:
    """Load demo data into PostgreSQL."""


@seed.command(name="sales")
@click.option("--days", default=7, show_default=True, help="how many days of orders")
@click.option("--orders-per-day", default=2000, show_default=True)
@click.option("--seed", "random_seed", default=7, show_default=True, help="same seed, same rows")
@click.option("--end", metavar="YYYY-MM-DD", help="the last day (default: yesterday, UTC)")
def seed_sales(days: int, orders_per_day: int, random_seed: int, end: str | None) -> None:
    """Products, customers, orders and line items in the `sales` schema (replaces what was there)."""
    import time
    from datetime import date

    from workflow_platform.cli.runner import environment, services
    from workflow_platform.demo_data.sales import SalesSeed, load
    from workflow_platform.settings import admin_dsn

    settings = SalesSeed(days, orders_per_day, random_seed)
    if end:
        settings = SalesSeed(days, orders_per_day, random_seed, date.fromisoformat(end))
    with services(_err) as service_env, environment(service_env):
        started = time.perf_counter()
        counts = load(admin_dsn(), settings)  # creates and replaces tables: the admin's work
    summary = {"from": settings.start.isoformat(), "to": settings.end.isoformat(), "rows": counts}
    click.echo(json.dumps({**summary, "seconds": round(time.perf_counter() - started, 2)}))


@main.group(name="eval")
def evaluate() -> None:
    """Measure models against published benchmarks."""


def _register_fraud_commands() -> None:
    from workflow_platform.cli.fraud import eval_fraud, seed_transactions, simulate

    seed.add_command(seed_transactions)
    evaluate.add_command(eval_fraud)
    main.add_command(simulate)


@main.group()
def stack() -> None:
    """The embedded stack: real PostgreSQL, NATS JetStream, S3 server and Pathway service on loopback."""


def _state_dir() -> Path:
    return wfp_home() / "stack"


@stack.command(name="up")
def stack_up() -> None:
    """Start the stack in the background (it keeps running until `wfp stack down`)."""
    from workflow_platform.stack import EmbeddedStack

    running = EmbeddedStack.attach(_state_dir())
    if running is None:
        running = EmbeddedStack(_state_dir()).start()
        # Services recorded as running that had died are restarted; the live ones are kept as they are.
        what = "started" if not running.recorded else f"restarted {', '.join(running.started) or 'none'}"
        _err(f'stack {what} ({_state_dir()}); `eval "$(wfp stack env)"` points wfp and the dagster CLI at it')
    else:
        _err(f"stack already running ({_state_dir()})")
    _print_env(_with_instance(running.env))


@stack.command(name="down")
def stack_down() -> None:
    """Stop the stack started by `wfp stack up`."""
    from workflow_platform.stack import EmbeddedStack

    # Not attach(): it needs every service alive, and the live ones of a stack with a dead one must stop too.
    stack = EmbeddedStack(_state_dir())
    if not stack.manifest_path.exists():
        _err("no stack is running")
        return
    stack.stop()
    _err("stack stopped")


@stack.command(name="env")
def stack_env() -> None:
    """Print `export ...` lines for the running stack: its WFP_* endpoints, and DAGSTER_HOME / DAGSTER_PG_URL of
    the platform's Dagster instance (the dagster CLI and `dagster dev` then record where `wfp up` does)."""
    from workflow_platform.stack import EmbeddedStack

    running = EmbeddedStack.attach(_state_dir())
    if running is None:
        _err("no stack is running: start it with `wfp stack up`")
        sys.exit(1)
    _print_env(_with_instance(running.env))


def _with_instance(service_env: dict[str, str]) -> dict[str, str]:
    from workflow_platform.instance.database import instance_environment
    from workflow_platform.settings import admin_dsn

    return {**service_env, **instance_environment(admin_dsn(service_env))}


def _print_env(values: dict[str, str]) -> None:
    import shlex

    for key, value in sorted(values.items()):
        click.echo(f"export {key}={shlex.quote(value)}")


_register_fraud_commands()

if __name__ == "__main__":
    main()
