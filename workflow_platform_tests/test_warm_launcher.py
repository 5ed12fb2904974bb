"""The warm run launcher on its own: a real PostgreSQL instance configured by the project's dagster.yaml, runs of a
test code location launched through the instance (as the run queue does), workers forked by a real zygote."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psutil
import pytest
import yaml
from dagster._core.launcher import WorkerStatus

from workflow_platform.api.runs import LocationOrigins
from workflow_platform.cli.runner import environment
from workflow_platform.instance.database import dagster_storage_url
from workflow_platform.instance.launcher.run_launcher import WORKER_TAG, WarmRunLauncher
from workflow_platform_tests.fixtures import warm_jobs

ROOT = Path(__file__).parent.parent
ORIGINS = LocationOrigins("warm-tests", "127.0.0.1", 0, warm_jobs.__name__, str(ROOT))
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


@pytest.fixture(scope="module")
def instance(stack_env, tmp_path_factory) -> Iterator[dg.DagsterInstance]:
    """The project's dagster.yaml on the stack's PostgreSQL, recycling its zygote every 3 runs."""
    home = tmp_path_factory.mktemp("warm_home")
    settings = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    settings["run_launcher"]["config"]["recycle_after_runs"] = 3
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    pg_url = dagster_storage_url(stack_env["WFP_PG_ADMIN_DSN"])
    with (
        environment({"DAGSTER_HOME": str(home), "DAGSTER_PG_URL": pg_url}),
        dg.DagsterInstance.get() as instance,
    ):
        assert isinstance(instance.run_launcher, WarmRunLauncher)
        yield instance  # leaving disposes the launcher: the pool stops its zygote


def launch(instance: dg.DagsterInstance, seconds: float = 0.0) -> str:
    run = instance.create_run_for_job(
        warm_jobs.stateful,
        run_config={"ops": {"leave_state": {"config": {"seconds": seconds}}}},
        remote_job_origin=ORIGINS.remote("stateful"),
        job_code_origin=ORIGINS.python("stateful"),
    )
    instance.launch_run(run.run_id, workspace=None)  # ty: ignore[invalid-argument-type]
    return run.run_id


def wait_status(instance: dg.DagsterInstance, run_id: str, statuses, timeout: float = 60) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = instance.get_run_by_id(run_id)
        if run.status in statuses:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} is {instance.get_run_by_id(run_id).status}, not {statuses}")


def found(instance: dg.DagsterInstance, run_id: str) -> dict:
    """What the op found when it started: the output metadata it recorded."""
    outputs = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_OUTPUT).records
    metadata = outputs[0].event_log_entry.dagster_event.event_specific_data.metadata
    return {"found": metadata["found"].value, "pid": metadata["pid"].value}


def worker_of(run: dg.DagsterRun) -> dict:
    return json.loads(run.tags[WORKER_TAG])


def test_each_run_gets_a_fresh_worker_that_sees_nothing_of_the_runs_before(instance):
    first, second = launch(instance), launch(instance)
    for run_id in (first, second):
        assert wait_status(instance, run_id, FINISHED).status == dg.DagsterRunStatus.SUCCESS
    seen = [found(instance, run_id) for run_id in (first, second)]
    assert seen[0]["pid"] != seen[1]["pid"]
    for report in seen:  # neither the module global nor the environment variable set by a run leaks
        assert report["found"] == {"global": [], "env": None}
    # Both ran in workers the zygote forked: the tag names the worker and it was not the test's own process.
    worker = worker_of(instance.get_run_by_id(second))
    assert worker["pid"] == seen[1]["pid"] != os.getpid()
    assert worker["host"] == socket.gethostname()
    assert "workflow_platform.instance.launcher.zygote" in " ".join(
        psutil.Process(worker["zygote"]).cmdline()
    )


def test_what_a_run_prints_is_in_its_compute_logs(instance):
    run_id = launch(instance)
    assert wait_status(instance, run_id, FINISHED).status == dg.DagsterRunStatus.SUCCESS
    captured = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.LOGS_CAPTURED).records
    file_key = captured[0].event_log_entry.dagster_event.event_specific_data.file_key
    log_key = instance.compute_log_manager.build_log_key_for_run(run_id, file_key)
    stdout = instance.compute_log_manager.get_log_data(log_key).stdout
    assert f"run {run_id} says hello" in stdout.decode()


def test_a_killed_worker_fails_its_run_at_once_and_the_next_run_gets_a_new_one(instance):
    run_id = launch(instance, seconds=60)
    run = wait_status(instance, run_id, [dg.DagsterRunStatus.STARTED])
    pid = worker_of(run)["pid"]  # the worker tags the run before it starts it
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    failed = wait_status(instance, run_id, FINISHED, timeout=30)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    assert time.monotonic() - killed < 30
    messages = [e.message for e in instance.all_logs(run_id) if e.dagster_event]
    assert any("SIGKILL" in (m or "") for m in messages), messages
    health = instance.run_launcher.check_run_worker_health(failed)
    assert health.status == WorkerStatus.FAILED
    after = launch(instance)
    assert wait_status(instance, after, FINISHED).status == dg.DagsterRunStatus.SUCCESS
    assert found(instance, after)["pid"] != pid


def test_when_the_zygote_dies_its_running_workers_are_still_watched(instance):
    run_id = launch(instance, seconds=60)
    run = wait_status(instance, run_id, [dg.DagsterRunStatus.STARTED])
    worker = worker_of(run)
    os.kill(worker["zygote"], signal.SIGKILL)
    time.sleep(2)
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED  # the run goes on
    os.kill(worker["pid"], signal.SIGKILL)
    failed = wait_status(instance, run_id, FINISHED, timeout=30)
    assert failed.status == dg.DagsterRunStatus.FAILURE
    after = launch(instance)  # a new zygote takes the next run
    assert wait_status(instance, after, FINISHED, timeout=120).status == dg.DagsterRunStatus.SUCCESS
    assert worker_of(instance.get_run_by_id(after))["zygote"] != worker["zygote"]


def test_terminating_a_run_interrupts_its_worker_and_cancels_it(instance):
    run_id = launch(instance, seconds=60)
    wait_status(instance, run_id, [dg.DagsterRunStatus.STARTED])
    started = time.monotonic()
    assert instance.run_launcher.terminate(run_id)
    assert wait_status(instance, run_id, FINISHED, timeout=30).status == dg.DagsterRunStatus.CANCELED
    assert time.monotonic() - started < 15
    pid = worker_of(instance.get_run_by_id(run_id))["pid"]
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the canceled run's worker is still running"
        time.sleep(0.1)


def test_the_zygote_is_replaced_after_its_run_limit_and_runs_go_on(instance):
    # recycle_after_runs is 3: a run past it starts a replacement, which takes the runs once it has imported
    # the code location; meanwhile runs keep going to the old zygote, which then exits.
    zygotes = []
    deadline = time.monotonic() + 90
    while len(set(zygotes)) < 2:
        assert time.monotonic() < deadline, f"the zygote was never replaced: {zygotes}"
        run_id = launch(instance)
        assert wait_status(instance, run_id, FINISHED).status == dg.DagsterRunStatus.SUCCESS
        zygotes.append(worker_of(instance.get_run_by_id(run_id))["zygote"])
        time.sleep(0.5)
    deadline = time.monotonic() + 30  # retired: its idle workers were let go and it exited
    while psutil.pid_exists(zygotes[0]) and psutil.Process(zygotes[0]).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the replaced zygote did not exit"
        time.sleep(0.1)


def test_health_of_a_run_another_pool_started_comes_from_its_worker_tag(instance):
    me = psutil.Process()
    alive = {"host": socket.gethostname(), "pid": me.pid, "created": me.create_time()}
    gone = {**alive, "created": me.create_time() - 100}  # the pid now belongs to another process
    launcher = instance.run_launcher
    for tag, status in ((alive, WorkerStatus.RUNNING), (gone, WorkerStatus.FAILED)):
        run = dg.DagsterRun(
            job_name="stateful", run_id=f"not-ours-{status.value}", tags={WORKER_TAG: json.dumps(tag)}
        )
        assert launcher.check_run_worker_health(run).status == status
