"""The scale-out configurations (deploy/scale-out/, docs/deploy.md): each loads into a DagsterInstance with its
run launcher, against the embedded PostgreSQL, even where its engine (Docker, Kubernetes, Celery workers) cannot
run here; each differs from deploy/dagster.yaml only in what scaling out changes."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import dagster as dg
import pytest
import requests
import yaml
from dagster._core.launcher import LaunchRunContext
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG
from dagster_docker import DockerRunLauncher
from dagster_k8s import K8sRunLauncher

from workflow_platform.api.runs import LocationOrigins
from workflow_platform.orchestration.catalog import check_file
from workflow_platform.orchestration.job import build_job
from workflow_platform_tests.conftest import demo_workflow, fetch, require_tool, running_platform, wait_for

ROOT = Path(__file__).parent.parent
GUIDE = ROOT / "docs" / "deploy.md"
PRODUCTION = ROOT / "deploy" / "dagster.yaml"
# Every instance file the guide tells an operator to use
GUIDED = sorted(set(re.findall(r"deploy/scale-out/[\w-]+/dagster\.yaml", GUIDE.read_text())))
LAUNCHERS = {"docker": DockerRunLauncher, "k8s": K8sRunLauncher, "celery": CeleryRunLauncher}


def test_the_guide_covers_every_scale_out_configuration():
    shipped = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "deploy" / "scale-out").glob("*/dagster.yaml"))
    assert shipped == GUIDED
    assert set(LAUNCHERS) == {Path(path).parent.name for path in shipped}


@pytest.mark.parametrize("path", GUIDED)
def test_scale_out_instance_differs_from_production_only_in_scaling(path):
    production, scaled = yaml.safe_load(PRODUCTION.read_text()), yaml.safe_load((ROOT / path).read_text())
    assert production["run_launcher"]["class"] == "WarmRunLauncher"
    assert scaled["run_launcher"]["class"] == LAUNCHERS[Path(path).parent.name].__name__
    for settings in (production, scaled):
        del settings["run_launcher"]
        del settings["concurrency"]["runs"]["max_concurrent_runs"]
        del settings["run_monitoring"]["start_timeout_seconds"]
    assert scaled == production


@pytest.mark.parametrize("path", GUIDED)
def test_scale_out_instance_loads_with_its_run_launcher(path, stack_env, tmp_path, monkeypatch):
    name = Path(path).parent.name
    settings = yaml.safe_load((ROOT / path).read_text())
    if name == "k8s":
        # In a cluster the launcher reads the pod's service account; here, a kubeconfig naming an unreachable
        # API server (the client connects only when a run is launched).
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                    "current-context": "x",
                }
            )
        )
        assert settings["run_launcher"]["config"]["load_incluster_config"] is True
        settings["run_launcher"]["config"]["load_incluster_config"] = False
        settings["run_launcher"]["config"]["kubeconfig_file"] = str(kubeconfig)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(settings))
    url = stack_env["WFP_PG_ADMIN_DSN"].replace("postgresql://", "postgresql+psycopg2://")
    monkeypatch.setenv("DAGSTER_PG_URL", url)
    monkeypatch.setenv("WFP_RUN_IMAGE", "workflow-platform-daemon")
    monkeypatch.setenv("WFP_DAGSTER_BUCKET", "dagster")
    monkeypatch.setenv("WFP_CELERY_BROKER_URL", f"sqla+{url}")
    monkeypatch.setenv("WFP_CELERY_BACKEND_URL", f"db+{url}")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        launcher = instance.run_launcher
        assert type(launcher) is LAUNCHERS[name]
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 50
        if name == "docker":
            assert launcher.image == "workflow-platform-daemon"
            assert launcher.networks == ["workflow-platform_default"]
            # a run container gets what deploy/dagster.yaml and the resources read
            for variable in ("DAGSTER_PG_URL", "WFP_DAGSTER_BUCKET", "WFP_IO_MANAGER", "AWS_ACCESS_KEY_ID"):
                assert variable in launcher.env_vars
        if name == "k8s":
            assert launcher.job_image == "workflow-platform-daemon"
            assert launcher.instance_config_map == "workflow-platform-instance"
        if name == "celery":
            assert launcher.celery.conf.broker_url == f"sqla+{url}"


def test_celery_broker_on_the_platforms_postgresql_takes_a_run(stack_env, pg, tmp_path, monkeypatch):
    """The Celery configuration needs no new service: a launched run is a task in PostgreSQL, waiting for a
    `dagster-celery worker` on any host."""
    (tmp_path / "dagster.yaml").write_text(
        (ROOT / "deploy" / "scale-out" / "celery" / "dagster.yaml").read_text()
    )
    url = stack_env["WFP_PG_ADMIN_DSN"].replace("postgresql://", "postgresql+psycopg2://")
    monkeypatch.setenv("DAGSTER_PG_URL", url)
    monkeypatch.setenv("WFP_DAGSTER_BUCKET", "dagster")
    monkeypatch.setenv("WFP_CELERY_BROKER_URL", f"sqla+{url}")
    monkeypatch.setenv("WFP_CELERY_BACKEND_URL", f"db+{url}")

    job = build_job(check_file(ROOT / "workflows" / "minio-store-workflow" / "workflow.json")[0])
    # a run as the API or the daemon creates it: the job comes from the code location's module
    origins = LocationOrigins("workflows", "code-server", 4000, "workflow_platform.definitions", str(ROOT))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        run = instance.create_run_for_job(job, job_code_origin=origins.python(job.name))
        instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
        task_id = instance.get_run_by_id(run.run_id).tags[DAGSTER_CELERY_TASK_ID_TAG]
    queued = fetch(
        pg,
        "SELECT q.name, m.payload FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id WHERE m.visible",
    )
    assert [name for name, payload in queued if task_id in payload] == ["workflow-runs"]
    # the workers the guide starts read the same broker and result backend
    from dagster_celery.cli import get_validated_config

    worker = get_validated_config(str(ROOT / "deploy" / "scale-out" / "celery" / "worker.yaml"))
    assert (worker["broker"], worker["backend"]) == (f"sqla+{url}", f"db+{url}")


def test_docker_scale_out_override_is_valid_and_switches_every_dagster_container(tmp_path):
    binary = require_tool("docker-compose")
    override = ROOT / "deploy" / "scale-out" / "docker" / "docker-compose.override.yml"
    settings = dict(
        line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line
    )
    env = {k: v for k, v in os.environ.items() if k not in settings}
    env |= {k: v or f"secret-{k.lower()}" for k, v in settings.items()} | {"DOCKER_GID": "999"}
    compose = [binary, "-p", "workflow-platform", "-f", str(ROOT / "docker-compose.yml"), "-f", str(override)]
    completed = subprocess.run(compose + ["config"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    services = yaml.safe_load(completed.stdout)["services"]
    for name in ("code-server", "webserver", "daemon", "api"):
        home = services[name]["environment"]["DAGSTER_HOME"]
        assert (ROOT / home.removeprefix("/app/") / "dagster.yaml").exists(), (name, home)
        assert home == "/app/deploy/scale-out/docker"
    assert "/var/run/docker.sock:/var/run/docker.sock:rw" in services["daemon"]["volumes"]
    # the run containers use the image the daemon was built as
    assert services["daemon"]["image"] == services["daemon"]["environment"]["WFP_RUN_IMAGE"]
    for variable in ("DOCKER_GID", "WFP_RUN_IMAGE"):  # what the override needs is in the guide
        assert variable in GUIDE.read_text()


def test_celery_scale_out_runs_workflows_in_a_celery_worker(stack_env, tmp_path):
    """`wfp up --launcher celery`: the Celery configuration's run launcher and a local `dagster-celery worker`
    on the instance's PostgreSQL. Runs are Celery tasks that end in SUCCESS, a workflow registered after the worker
    started included (each run gets a fresh worker process: worker.yaml's worker_max_tasks_per_child)."""
    with running_platform(tmp_path, launcher="celery") as running:
        api = running["api"]
        tasks = []
        for name in ("celery-first", "celery-registered-later"):
            submitted = requests.post(f"{api}/api/workflows", json=demo_workflow(name), timeout=120)
            assert submitted.status_code == 201, submitted.text
            execution = wait_for(api, submitted.json()["executionId"], timeout=240)
            assert execution["status"] == "SUCCESS", execution
            tasks.append(execution["tags"][DAGSTER_CELERY_TASK_ID_TAG])
    # (the queue is the session's: the worker may also have taken a run an earlier test left in it)
    worker_log = (tmp_path / "logs" / "celery-worker.log").read_text()
    for task in tasks:
        assert re.search(rf"Task execute_job\[{task}\] succeeded in", worker_log), worker_log[-3000:]
