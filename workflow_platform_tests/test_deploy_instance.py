"""deploy/dagster.yaml, the docker-compose instance, against the embedded PostgreSQL and object store: a workflow
runs with it and what containers must share lands in the bucket (compute logs, op outputs)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from workflow_platform.instance.launcher.run_launcher import WarmRunLauncher
from workflow_platform.language.spec import WorkflowSpec
from workflow_platform.orchestration.job import build_job
from workflow_platform.resources.io_manager import OUTPUTS_PREFIX

ROOT = Path(__file__).parent.parent

WORKFLOW = {
    "name": "deploy-check",
    "steps": [
        {"id": "first", "plugin": "postgres", "action": "query", "input": {"sql": "SELECT 20 AS n"}},
        {
            "id": "second",
            "plugin": "postgres",
            "action": "query",
            "needs": ["first"],
            "input": {"sql": "SELECT :n + 1 AS n", "params": {"n": "{{ steps.first.result.rows[0].n }}"}},
        },
    ],
}


def test_production_instance_keeps_logs_and_outputs_in_the_object_store(stack_env, s3, tmp_path, monkeypatch):
    bucket = f"dagster-{uuid.uuid4().hex[:8]}"
    s3.make_bucket(bucket)
    shutil.copy(ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    # What docker-compose sets in every Dagster container (x-dagster-env)
    monkeypatch.setenv(
        "DAGSTER_PG_URL", stack_env["WFP_PG_ADMIN_DSN"].replace("postgresql://", "postgresql+psycopg2://")
    )
    monkeypatch.setenv("WFP_DAGSTER_BUCKET", bucket)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", stack_env["WFP_S3_ACCESS_KEY"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", stack_env["WFP_S3_SECRET_KEY"])
    monkeypatch.setenv("WFP_IO_MANAGER", "s3")

    job = build_job(WorkflowSpec.model_validate(WORKFLOW))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert isinstance(instance.run_launcher, WarmRunLauncher)
        assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
        limits = instance.get_concurrency_config().run_queue_config
        assert limits.max_concurrent_runs >= 1
        assert {
            "key": "wfp/workflow",
            "value": "fraud-model-training",
            "limit": 1,
        } in limits.tag_concurrency_limits
        assert instance.run_retries_enabled and instance.run_monitoring_enabled

        result = job.execute_in_process(instance=instance)
        assert result.success
        assert result.output_for_node("second")["rows"] == [{"n": 21}]

    objects = {o.object_name for o in s3.list_objects(bucket, recursive=True)}
    # op outputs: the IO manager's pickles, one per step output, under the run's id
    outputs = {name for name in objects if name.startswith(f"{OUTPUTS_PREFIX}/storage/{result.run_id}/")}
    assert {Path(name).parent.name for name in outputs} == {"first", "second"}, objects
    # compute logs: the run's captured stdout and stderr, under the key its LOGS_CAPTURED event names
    captured = next(e for e in result.all_events if e.event_type_value == "LOGS_CAPTURED")
    prefix = f"compute-logs/storage/{result.run_id}/compute_logs/{captured.event_specific_data.file_key}"
    assert {f"{prefix}.out", f"{prefix}.err"} <= objects, objects


def test_production_instance_stores_as_the_local_one():
    """The same storage classes as the root dagster.yaml (`wfp up`), which is where they are tuned."""
    local = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    production = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        assert production[storage] == local[storage], storage


def test_op_outputs_use_dagsters_default_io_manager_unless_the_object_store_is_chosen(monkeypatch):
    from workflow_platform.resources import service_resources

    monkeypatch.delenv("WFP_IO_MANAGER", raising=False)
    assert "io_manager" not in service_resources()
    monkeypatch.setenv("WFP_IO_MANAGER", "s3")
    assert type(service_resources()["io_manager"]).__name__ == "S3PickleIOManager"
    monkeypatch.setenv("WFP_IO_MANAGER", "minio")
    with pytest.raises(ValueError, match="expected 'filesystem' or 's3'"):
        service_resources()
