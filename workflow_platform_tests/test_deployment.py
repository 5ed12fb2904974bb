"""The deployment files: dagster.yaml is a working instance on PostgreSQL; docker-compose.yml is consistent."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
from contextlib import closing
from pathlib import Path

import dagster as dg
import psycopg2
import yaml
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from workflow_platform.launcher.run_launcher import WarmRunLauncher
from workflow_platform.notifications import RUN_ENDS
from workflow_platform.settings import ENDPOINT_VARIABLES
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
    assert {"postgres", "nats", "minio", "pathway", "code-server", "webserver", "daemon"} <= set(services)
    for name in ("code-server", "webserver", "daemon"):
        assert set(ENDPOINT_VARIABLES) <= set(services[name]["environment"]), name
    assert "healthcheck" in services["pathway"]
    assert services["nats"]["command"][0] == "-js"
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
    assert published == {"webserver"}  # only the Dagster UI, behind WFP_API_TOKEN
    assert resolved["webserver"]["command"][:2] == ["wfp", "webserver"]
    assert "minioadmin" not in completed.stdout and ":postgres@" not in completed.stdout  # no default secret
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
