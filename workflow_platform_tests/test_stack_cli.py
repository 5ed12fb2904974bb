"""The embedded stack as a user drives it: `wfp stack up`, `wfp run` reusing it, `wfp stack env`, `wfp stack down`."""

from __future__ import annotations

import json
import os
import shlex
import signal
from pathlib import Path

import psutil
import psycopg2

from workflow_platform.stack.processes import ProcessRef, wait_gone
from workflow_platform_tests.conftest import wfp


def test_stack_up_run_env_down(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFP_") and k != "DAGSTER_HOME"}
    env["WFP_HOME"] = str(tmp_path / "home")
    up = wfp("stack", "up", env=env)
    try:
        assert up.returncode == 0, up.stderr
        exports = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in up.stdout.splitlines()
        )
        assert set(exports) >= {"WFP_PG_DSN", "WFP_NATS_URL", "WFP_S3_ENDPOINT", "WFP_PATHWAY_URL"}
        assert wfp("stack", "env", env=env).stdout == up.stdout
        # the fraud stream's supervisor runs with the stack (idle: no model yet)
        assert recorded_processes(tmp_path / "home" / "stack")["fraud-stream"].alive()

        ran = wfp("run", "minio-store-workflow", "--outputs", str(tmp_path / "out"), env=env)
        assert ran.returncode == 0, ran.stderr
        assert "using the embedded stack started by `wfp stack up`" in ran.stderr
        assert (tmp_path / "out" / "result.json").exists()
        with psycopg2.connect(exports["WFP_PG_DSN"]) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM orchestrator.events WHERE event_type = 'workflow_completed'")
            assert cursor.fetchone()[0] == 1
        assert (tmp_path / "home" / "dagster").is_dir()  # the run was recorded in the persistent instance
    finally:
        down = wfp("stack", "down", env=env)
    assert down.returncode == 0 and "stack stopped" in down.stderr
    assert wfp("stack", "env", env=env).returncode == 1


# Stores an object, publishes on JetStream and records an event: one step on each service but Pathway.
SMALL_WORKFLOW = {
    "name": "stack-check-workflow",
    "description": "touches the object store, NATS and PostgreSQL once each",
    "steps": [
        {
            "id": "store",
            "plugin": "minio",
            "action": "putObject",
            "input": {"key": "outputs/stack-check-workflow/result.json", "data": {"checked": True}},
        },
        {
            "id": "announce",
            "plugin": "nats",
            "action": "publish",
            "needs": ["store"],
            "input": {"subject": "stackcheck.done", "message": {"object": "{{ steps.store.result.url }}"}},
        },
        {
            "id": "record",
            "plugin": "postgres",
            "action": "insert",
            "needs": ["announce"],
            "input": {"table": "orchestrator.events", "data": {"event_type": "stack_checked"}},
        },
    ],
}


def servers_on(data_dir: Path) -> list[psutil.Process]:
    """Live processes naming `data_dir` in their command line (nats-server: `-sd <dir>`)."""
    return [
        proc
        for proc in psutil.process_iter(["cmdline", "status"])
        if str(data_dir) in (proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE
    ]


def recorded_processes(state_dir: Path) -> dict[str, ProcessRef]:
    services = json.loads((state_dir / "stack.json").read_text())["services"]
    return {name: ProcessRef(**entry["process"]) for name, entry in services.items()}


def test_run_restarts_a_killed_service_and_leaves_the_stack_running(tmp_path):
    """`wfp run` on a `wfp stack up` stack with a crashed service: it restarts only that one, and leaves every
    service running (the live ones untouched) when it ends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFP_") and k != "DAGSTER_HOME"}
    env["WFP_HOME"] = str(tmp_path / "home")
    state_dir = tmp_path / "home" / "stack"
    workflow = tmp_path / "workflows" / "stack-check-workflow" / "workflow.json"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(json.dumps(SMALL_WORKFLOW))
    up = wfp("stack", "up", env=env)
    try:
        assert up.returncode == 0, up.stderr
        before = recorded_processes(state_dir)
        os.kill(before["nats"].pid, signal.SIGKILL)
        assert wait_gone(before["nats"], timeout=5)

        ran = wfp("run", str(workflow), "--outputs", str(tmp_path / "out"), env=env)
        assert ran.returncode == 0, ran.stderr
        assert (tmp_path / "out" / "result.json").exists()

        untouched = {name: ref for name, ref in before.items() if name != "nats"}
        assert {name: ref.alive() for name, ref in untouched.items()} == dict.fromkeys(untouched, True)
        after = recorded_processes(state_dir)
        assert {name: after[name] for name in untouched} == untouched
        assert after["nats"] != before["nats"] and after["nats"].alive()
        assert [proc.pid for proc in servers_on(state_dir / "nats")] == [after["nats"].pid]
        assert "restarted nats" in ran.stderr
    finally:
        down = wfp("stack", "down", env=env)
    assert down.returncode == 0 and "stack stopped" in down.stderr
    assert not any(process.alive() for process in after.values())
