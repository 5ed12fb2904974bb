"""`wfp up`: the platform on one machine — services, Dagster webserver and daemon, and the HTTP API.

The Dagster instance is the project's dagster.yaml (PostgreSQL storage, queued runs, run retries and monitoring)
on the stack's PostgreSQL, in a database of its own. As in docker-compose, the code location is served by one
`dagster code-server`, which the webserver and the daemon reach over gRPC: left to load workspace.yaml's
python_module themselves, each would start its own code server and the daemon would restart its own every minute,
each start importing the whole code location again. Ctrl-C stops everything this command started.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from workflow_platform.api.access import AccessPolicy
from workflow_platform.api.runs import LocationOrigins
from workflow_platform.cli.runner import services
from workflow_platform.instance.database import instance_environment, pool_storage_connections
from workflow_platform.resources.outbound import OutboundPolicy
from workflow_platform.settings import PlatformSettings, ServiceSettings, admin_dsn, variable, wfp_home
from workflow_platform.stack.processes import (
    LOOPBACK,
    free_ports,
    http_ok,
    port_open,
    rotate_log,
    spawn,
    start_child,
    stop_child,
    wait_until,
)

# The API's instance: a pool of storage connections for its request threads.
API_DB_POOL_SIZE = 8


@dataclass(frozen=True)
class UpOptions:
    host: str = "127.0.0.1"
    port: int = 3000  # the HTTP API
    dagster_port: int = 3001  # the Dagster UI
    project_dir: Path = Path.cwd()
    # "warm": dagster.yaml as it is; "default": Dagster's DefaultRunLauncher (the baseline); "celery": the
    # scale-out's CeleryRunLauncher with one local worker (deploy/scale-out/celery)
    launcher: str = "warm"


LAUNCHERS = ("warm", "default", "celery")
CELERY_DIR = Path("deploy", "scale-out", "celery")
CELERY_QUEUE = "workflow-runs"


def prepare_environment(options: UpOptions, service_env: dict[str, str]) -> dict[str, str]:
    settings = PlatformSettings()
    home = wfp_home()
    submitted = home / "submitted"
    submitted.mkdir(parents=True, exist_ok=True)
    shipped = settings.workflows_path(options.project_dir)
    # The links to stored objects in run metadata (object_links.py) name this process's API, unless set.
    api_url = settings.api_url if "api_url" in settings.model_fields_set else None
    dagster_yaml = instance_yaml(options.project_dir, options.launcher)
    instance_env = instance_environment(admin_dsn({**os.environ, **service_env}), dagster_yaml)
    return {
        **service_env,
        **instance_env,
        **(_celery_environment(settings, instance_env) if options.launcher == "celery" else {}),
        variable("workflows_dir"): os.pathsep.join([shipped, str(submitted)]),
        variable("plugins_file"): str(settings.plugins_file or home / "plugins.json"),
        variable("api_url"): api_url or f"http://{_link_host(options.host)}:{options.port}",
        variable("dagster_grpc_timeout_seconds"): str(settings.dagster_grpc_timeout_seconds),
    }


def _link_host(host: str) -> str:
    """A host a link can name: a wildcard listening address is reached as localhost."""
    host = "localhost" if host in ("0.0.0.0", "::", "") else host
    return f"[{host}]" if ":" in host else host


def instance_yaml(project_dir: Path, launcher: str) -> str:
    """The project's dagster.yaml; for `--launcher default` the same with Dagster's own run launcher and
    queued coordinator (runs as Dagster starts them out of the box: a new process each); for `--launcher celery`
    the same with the Celery scale-out's run launcher, as deploy/scale-out/celery/dagster.yaml configures it."""
    project_yaml = (project_dir / "dagster.yaml").read_text()
    if launcher == "warm":
        return project_yaml
    settings = yaml.safe_load(project_yaml)
    if launcher == "celery":
        scale_out = yaml.safe_load((project_dir / CELERY_DIR / "dagster.yaml").read_text())
        settings["run_launcher"] = scale_out["run_launcher"]
        return yaml.safe_dump(settings, sort_keys=False)
    settings.pop("run_launcher", None)
    settings["run_coordinator"]["module"] = "dagster._core.run_coordinator"
    settings["run_coordinator"]["class"] = "QueuedRunCoordinator"
    return yaml.safe_dump(settings, sort_keys=False)


def _celery_environment(settings: PlatformSettings, instance_env: dict[str, str]) -> dict[str, str]:
    """The broker and result backend: the user's, else the instance's PostgreSQL (no new service); and this
    interpreter's scripts first on PATH, where `dagster-celery worker start` looks for `celery`."""
    storage = instance_env[variable("dagster_pg_url")]
    return {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        variable("celery_broker_url"): settings.celery_broker_url or f"sqla+{storage}",
        variable("celery_backend_url"): settings.celery_backend_url or f"db+{storage}",
    }


@dataclass(frozen=True)
class CodeLocation:
    module: str
    working_directory: Path
    name: str


def code_location(workspace_file: Path) -> CodeLocation:
    """The python_module code location that workspace.yaml declares."""
    entries = (yaml.safe_load(workspace_file.read_text()) or {}).get("load_from") or []
    for entry in entries:
        if isinstance(entry, dict) and isinstance(module := entry.get("python_module"), dict):
            return CodeLocation(
                module["module_name"],
                (workspace_file.parent / module.get("working_directory", ".")).resolve(),
                module.get("location_name") or module["module_name"],
            )
    raise RuntimeError(f"{workspace_file} declares no python_module code location")


@contextmanager
def dagster_processes(options: UpOptions, log_dir: Path, access: AccessPolicy) -> Iterator[LocationOrigins]:
    """The code server, then the Dagster webserver and daemon, each in its own process group, stopped on exit.
    Yields where the code location is, for the runs the API creates."""
    log_dir.mkdir(parents=True, exist_ok=True)
    location = code_location(options.project_dir / "workspace.yaml")
    (code_port,) = free_ports()
    # The code server wfp up runs (the project's workspace.yaml names the module; this one, its address).
    workspace = log_dir.parent / "workspace.yaml"
    grpc_server = {"host": LOOPBACK, "port": code_port, "location_name": location.name}
    workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": grpc_server}]}))
    commands = _dagster_commands(options, location, code_port, workspace)
    processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str) -> None:
        processes[name] = spawn(commands[name], log_path=log_dir / f"{name}.log", cwd=options.project_dir)

    stopping = threading.Event()
    try:
        for name in commands:
            start(name)
            if name == "code-server":  # the webserver and daemon load the location from it when they start
                listening = functools.partial(port_open, code_port, LOOPBACK)
                _wait_for(name, processes, log_dir, listening, timeout=180.0)
        server_info = f"http://{options.host}:{options.dagster_port}/server_info"
        answering = functools.partial(_answers, server_info, access.operator_headers())
        _wait_for("webserver", processes, log_dir, answering, timeout=120.0)
        threading.Thread(target=_restart_dead, args=(processes, start, stopping), daemon=True).start()
        yield LocationOrigins(
            location.name, LOOPBACK, code_port, location.module, str(location.working_directory)
        )
    finally:
        stopping.set()
        for process in reversed(processes.values()):
            stop_child(process, STOP_TIMEOUT_S)


def _dagster_commands(
    options: UpOptions, location: CodeLocation, code_port: int, workspace: Path
) -> dict[str, list[str]]:
    """The code server's, webserver's and daemon's command lines, in the order they start."""
    bin_dir = Path(sys.executable).parent
    code_server = [str(bin_dir / "dagster"), "code-server", "start", "-m", location.module]
    code_server += ["-d", str(location.working_directory), "--location-name", location.name]
    code_server += ["-h", LOOPBACK, "-p", str(code_port)]
    webserver = [str(bin_dir / "wfp"), "webserver", "-h", options.host, "-p", str(options.dagster_port)]
    webserver += ["-w", str(workspace)]
    daemon = (
        [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)]
        if options.launcher == "default"
        else [str(bin_dir / "wfp"), "daemon", "-w", str(workspace)]
    )
    commands = {"code-server": code_server, "webserver": webserver, "daemon": daemon}
    if options.launcher == "celery":
        worker_yaml = options.project_dir / CELERY_DIR / "worker.yaml"
        commands["celery-worker"] = [
            str(bin_dir / "dagster-celery"),
            "worker",
            "start",
            "-y",
            str(worker_yaml),
        ]
        commands["celery-worker"] += ["-A", "dagster_celery.app", "-q", CELERY_QUEUE, "-n", "wfp-up"]
    return commands


def _wait_for(
    name: str,
    processes: dict[str, subprocess.Popen[bytes]],
    log_dir: Path,
    ready: Callable[[], bool],
    timeout: float,
) -> None:
    """Until `ready()`: the code server listens once it has loaded the code location (or recorded why not)."""
    service = f"the Dagster {name.replace('-', ' ')}"
    wait_until(
        ready, service=service, log_path=log_dir / f"{name}.log", timeout=timeout, process=processes[name]
    )


def _answers(url: str, headers: dict[str, str]) -> bool:
    try:
        return requests.get(url, headers=headers, timeout=2).ok
    except requests.RequestException:
        return False


def _restart_dead(
    processes: dict[str, subprocess.Popen[bytes]], start: Callable[[str], None], stopping: threading.Event
) -> None:
    """A Dagster process that dies (killed, out of memory) is started again: without its daemon the platform
    would queue runs that never start. The new daemon's run monitoring takes over the runs of the old one's
    workers (they carry their pid)."""
    while not stopping.wait(1.0):
        for name, process in list(processes.items()):
            if process.poll() is not None and not stopping.is_set():
                print(f"the Dagster {name} exited ({process.returncode}); starting it again", file=sys.stderr)
                start(name)


# The daemon lets running runs finish for a few seconds, then interrupts them (launcher/pool.py): ~25 s at most.
STOP_TIMEOUT_S = 40


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_platform(options: UpOptions, log: Callable[[str], None]) -> None:
    signal.signal(signal.SIGTERM, _interrupt)  # stop as cleanly on SIGTERM (kill, systemd) as on Ctrl-C
    access = _checked_setup(options)
    with services(log) as service_env:
        environment = prepare_environment(options, service_env)
        os.environ.update(environment)
        log(
            f"starting the Dagster code server, webserver (http://{options.host}:{options.dagster_port}) and daemon ..."
        )
        with dagster_processes(options, wfp_home() / "logs", access) as origins:
            _serve_api(options, origins, access, environment, service_env, log)


def _checked_setup(options: UpOptions) -> AccessPolicy:
    """The access policy, once the listening address, the outbound policy and the project folder are right:
    a mistake stops `wfp up` before it starts anything."""
    access = AccessPolicy.from_settings(PlatformSettings())
    access.check_listen(options.host)
    try:
        # A mistake in WFP_HTTP_ALLOW stops here, not in the first step.
        OutboundPolicy.from_settings(ServiceSettings())
    except ValueError as error:
        raise RuntimeError(str(error)) from None
    for required in ("dagster.yaml", "workspace.yaml"):
        if not (options.project_dir / required).exists():
            raise RuntimeError(
                f"{required} not found in {options.project_dir}: run `wfp up` from the project folder"
            )
    return access


def _serve_api(
    options: UpOptions,
    origins: LocationOrigins,
    access: AccessPolicy,
    environment: dict[str, str],
    service_env: dict[str, str],
    log: Callable[[str], None],
) -> None:
    """The HTTP API on the platform's instance, until Ctrl-C or SIGTERM."""
    import dagster as dg
    import uvicorn

    from workflow_platform.api.app import create_app
    from workflow_platform.api.code_location import CodeLocationReloader
    from workflow_platform.api.config import ApiConfig
    from workflow_platform.api.idempotency import IdempotencyKeys
    from workflow_platform.api.runs import RunSubmitter
    from workflow_platform.instance.launcher.run_launcher import WarmRunLauncher

    with dg.DagsterInstance.get() as instance:
        pool_storage_connections(instance, size=API_DB_POOL_SIZE, name="wfp-api")
        api_config = ApiConfig(
            instance=instance,
            runs=RunSubmitter(instance, origins),
            idempotency=IdempotencyKeys(environment[variable("dagster_pg_url")]),
            code_location=CodeLocationReloader(
                options.host,
                options.dagster_port,
                headers=access.operator_headers(),
                runs_need_code_server=not isinstance(instance.run_launcher, WarmRunLauncher),
            ),
            submitted_dir=Path(environment[variable("workflows_dir")].split(os.pathsep)[-1]),
            plugins_file=Path(environment[variable("plugins_file")]),
            access=access,
            service_env=service_env,
        )
        log(
            f"API on http://{options.host}:{options.port}/api (OpenAPI: /api/docs); Dagster UI on http://{options.host}:{options.dagster_port}"
        )
        server = uvicorn.Server(
            uvicorn.Config(create_app(api_config), host=options.host, port=options.port, log_level="warning")
        )
        try:
            server.run()  # returns on Ctrl-C / SIGTERM
        finally:
            log("stopping ...")


def start_platform_process(
    home: Path,
    port: int,
    dagster_port: int,
    env: dict[str, str],
    timeout: float = 180.0,
    launcher: str = "warm",
) -> subprocess.Popen[bytes]:
    """`wfp up` in a subprocess (tests, benchmarks) with WFP_HOME=home, logging to home/up.log; returns once
    its API answers /api/health. Raises ServiceStartError with the end of the log if it exits or is not healthy
    in time (it is stopped first). Stop it with SIGINT (Ctrl-C)."""
    command = [sys.executable, "-m", "workflow_platform.cli.main", "up", "--port", str(port)]
    command += ["--dagster-port", str(dagster_port), "--launcher", launcher]
    log_path = home / "up.log"
    rotate_log(log_path)
    return start_child(
        "wfp up",
        command,
        log_path=log_path,
        ready=functools.partial(http_ok, f"http://{LOOPBACK}:{port}/api/health", timeout=5.0),
        timeout=timeout,
        env={**env, variable("home"): str(home)},
        cwd=Path(__file__).parents[2],
        own_session=False,  # a Ctrl-C for the caller stops it too
        stop_grace=STOP_TIMEOUT_S * 3,  # it stops its Dagster processes (in sessions of their own) first
    )
