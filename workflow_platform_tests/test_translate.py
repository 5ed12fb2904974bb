import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import jsonschema

from workflow_platform.definitions import build_definitions
from workflow_platform.orchestration.catalog import check_document, workflow_schema
from workflow_platform.orchestration.job import build_job
from workflow_platform.orchestration.triggers import build_schedule

FIXTURES = Path(__file__).parent / "fixtures"


def spec_of(document: dict):
    spec, problems = check_document(document)
    assert problems == []
    return spec


def digest() -> dict:
    return json.loads((FIXTURES / "orders-digest.json").read_text())


def test_one_op_per_step_with_needs_as_dependencies():
    job = build_job(spec_of(digest()))
    assert job.name == "orders_digest"
    assert [n.name for n in job.nodes_in_topological_order][:3] == [
        "fetch_open_orders",
        "fetch_profiles",
        "summarise",
    ]
    deps = {
        node.alias: sorted(d.node for d in deps.values()) for node, deps in job.graph.dependencies.items()
    }
    assert deps["summarise"] == ["fetch_open_orders", "fetch_profiles"]
    assert deps["log_done"] == ["archive_digest"]
    assert deps["announce"] == ["summarise"]
    op = job.graph.node_named("announce").definition
    assert op.tags["plugin"] == "nats" and op.tags["action"] == "publish"
    assert job.tags["wfp/workflow"] == "orders-digest"


def test_templates_reading_an_ancestor_get_its_result_as_an_input():
    document = digest()
    document["steps"][5]["input"]["data"]["data"] = "{{ steps.fetch-open-orders.result.rowCount }}"
    job = build_job(spec_of(document))
    deps = {
        node.alias: sorted(d.node for d in deps.values()) for node, deps in job.graph.dependencies.items()
    }
    assert deps["log_done"] == ["archive_digest", "fetch_open_orders"]


def test_retry_defaults_and_step_overrides_become_retry_policies():
    document = digest()
    document["defaults"] = {
        "retry": {"maxAttempts": 4, "backoff": "exponential", "delayMs": 200, "jitter": True}
    }
    document["steps"][1]["retry"] = {"maxAttempts": 2, "delayMs": 50}
    document["steps"][2]["retry"] = {"maxAttempts": 1}
    job = build_job(spec_of(document))
    first = job.graph.node_named("fetch_open_orders").definition.retry_policy
    assert (first.max_retries, first.delay, first.backoff, first.jitter) == (
        3,
        0.2,
        dg.Backoff.EXPONENTIAL,
        dg.Jitter.FULL,
    )
    second = job.graph.node_named("fetch_profiles").definition.retry_policy
    assert (second.max_retries, second.delay, second.backoff) == (1, 0.05, None)
    assert job.graph.node_named("summarise").definition.retry_policy is None


def test_params_are_run_config_and_schedules_come_from_the_file():
    document = digest()
    document["params"] = {"day": {"type": "string", "default": "2025-10-31"}, "limit": {"type": "integer"}}
    document["schedule"] = {"cron": "0 6 * * *", "timezone": "Europe/Paris", "params": {"limit": 10}}
    spec = spec_of(document)
    job = build_job(spec)
    schema = job.run_config_schema.config_type.fields["resources"].config_type.fields["workflow_params"]
    fields = schema.config_type.fields["config"].config_type.fields
    assert fields["day"].default_value == "2025-10-31" and fields["limit"].is_required
    schedule = build_schedule(spec, job)
    assert schedule.cron_schedule == "0 6 * * *" and schedule.execution_timezone == "Europe/Paris"
    context = dg.build_schedule_context(scheduled_execution_time=None)
    request = schedule.evaluate_tick(context).run_requests[0]
    assert request.run_config["resources"]["workflow_params"]["config"] == {"limit": 10}


def workflow_jobs(jobs) -> list[str]:
    """The workflows' jobs, less the hidden job Dagster adds for the declared assets (__ASSET_JOB)."""
    return sorted(job.name for job in jobs if not job.name.startswith("__"))


def test_definitions_load_every_valid_workflow_and_report_the_invalid_ones(tmp_path, caplog):
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "workflow.json").write_text((FIXTURES / "orders-digest.json").read_text())
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "workflow.json").write_text('{"name": "broken", "steps": [{"id": "a"}]}')
    with caplog.at_level(logging.ERROR, logger="workflow_platform"):
        defs = build_definitions([tmp_path])
    assert "broken/workflow.json:/steps/0/plugin: missing required key 'plugin'" in caplog.text
    jobs = {job.name: job for job in defs.resolve_all_job_defs()}
    assert workflow_jobs(jobs.values()) == ["broken", "orders_digest"]
    # The invalid one is a placeholder job that says what is wrong where the UI shows it, and fails if launched.
    placeholder = jobs["broken"]
    assert placeholder.tags["wfp/invalid"] == "true"
    assert str(tmp_path / "broken" / "workflow.json") in placeholder.description
    assert "`/steps/0/plugin`: missing required key 'plugin'" in placeholder.description
    result = placeholder.execute_in_process(raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "broken/workflow.json:/steps/0/plugin: missing required key 'plugin'" in failure


def test_an_invalid_workflow_named_like_a_loaded_one_gets_its_own_placeholder(tmp_path):
    (tmp_path / "orders_digest").mkdir()
    (tmp_path / "orders_digest" / "workflow.json").write_text((FIXTURES / "orders-digest.json").read_text())
    (tmp_path / "orders-digest").mkdir()  # same job name as the valid one: a collision problem
    (tmp_path / "orders-digest" / "workflow.json").write_text((FIXTURES / "orders-digest.json").read_text())
    (tmp_path / "unreadable").mkdir()
    (tmp_path / "unreadable" / "workflow.json").write_text("{ not json")
    jobs = {job.name: job for job in build_definitions([tmp_path]).resolve_all_job_defs()}
    assert workflow_jobs(jobs.values()) == ["orders_digest", "orders_digest__invalid", "unreadable"]
    assert "is already used by" in jobs["orders_digest__invalid"].description
    assert "malformed JSON" in jobs["unreadable"].description


def test_workflows_sharing_step_ids_load_side_by_side(tmp_path):
    for name in ("first-digest", "second-digest"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "workflow.json").write_text(json.dumps({**digest(), "name": name}))
    defs = build_definitions([tmp_path])
    repository = defs.get_repository_def()  # raises on conflicting op definitions
    assert workflow_jobs(repository.get_all_jobs()) == ["first_digest", "second_digest"]
    assert (
        repository.get_job("first_digest").graph.node_named("summarise").definition.name
        == "first_digest__summarise"
    )


def test_the_shipped_code_location_loads(tmp_path):
    # What `dagster dev` / `dagster job execute -m workflow_platform.definitions` load.
    workflows = Path(__file__).parent.parent / "workflows"
    shutil.copytree(workflows, tmp_path / "workflows")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from workflow_platform.definitions import defs; print(sorted(j.name for j in defs.resolve_all_job_defs()))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "minio_store_workflow" in out.stdout


def test_json_schema_export_accepts_valid_files_and_rejects_bad_inputs():
    validator = jsonschema.Draft202012Validator(workflow_schema())
    assert list(validator.iter_errors(digest())) == []
    document = digest()
    document["steps"][0]["input"]["limit"] = "ten"
    assert list(validator.iter_errors(document))
