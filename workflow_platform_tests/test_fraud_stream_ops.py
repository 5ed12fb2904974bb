"""The fraud stream operated from Dagster, on the session's real NATS: the `fraud_stream_health` sensor and the
`fraud_stream_is_flowing` check read the control bucket a supervisor writes (statuses are written here the way
the supervisor writes them), and the fraud plugin's stream actions write their commands into it."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import dagster as dg
import nats
import pytest

from workflow_platform.demo_data.fraud_simulator import SimulationConfig, simulate_cached
from workflow_platform.fraud.features import transform_features
from workflow_platform.fraud.model import fit_model, save_model
from workflow_platform.language.spec import WorkflowSpec
from workflow_platform.orchestration.catalog import check_document
from workflow_platform.orchestration.fraud_stream_asset import (
    CHECK_NAME,
    FRAUD_STREAM,
    fraud_stream_health,
    fraud_stream_is_flowing,
)
from workflow_platform.orchestration.job import build_job
from workflow_platform.resources import service_resources
from workflow_platform.resources.fraud_stream_control import (
    STATUS_KEY,
    Desired,
    Status,
    StreamState,
    command,
    control_bucket,
    read_desired,
    write_status,
)
from workflow_platform_tests.conftest import evaluate_sensor, graphql, running_platform

T = TypeVar("T")

pytestmark = pytest.mark.usefixtures("stack_env")


def on_bucket(work: Callable[..., Awaitable[T]]) -> T:
    """`work(bucket)` on the control bucket, through a connection of the test's own."""

    async def session() -> T:
        client = await nats.connect(os.environ["WFP_NATS_URL"])
        try:
            return await work(await control_bucket(client.jetstream()))
        finally:
            await client.drain()

    return asyncio.run(session())


def put_status(**fields: object) -> Status:
    status = Status.model_validate({"updated_at": dt.datetime.now(dt.UTC), **fields})
    on_bucket(lambda bucket: write_status(bucket, status))
    return status


def put_command(state: StreamState, requested_by: str = "test") -> Desired:
    return on_bucket(lambda bucket: command(bucket, state, requested_by=requested_by))


def ago(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def should_run_without_status() -> Iterator[None]:
    """Each test starts from a bucket asking the stream to run and holding no status (no supervisor), and leaves
    it so for the session's other tests (a stream stopped here would stay stopped under their `wfp up`)."""
    clear_to_run()
    yield
    clear_to_run()


def clear_to_run() -> None:
    put_command("running")
    on_bucket(lambda bucket: bucket.delete(STATUS_KEY))


def tick() -> tuple[dg.AssetCheckEvaluation, dg.AssetObservation | None]:
    """One tick of the sensor: its check evaluation, and its observation when it made one."""
    with dg.instance_for_test() as instance:
        result = evaluate_sensor(fraud_stream_health, instance)
    events = list(result.asset_events)
    (evaluation,) = [e for e in events if isinstance(e, dg.AssetCheckEvaluation)]
    assert (evaluation.asset_key, evaluation.check_name) == (FRAUD_STREAM, CHECK_NAME)
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    observations = [e for e in events if isinstance(e, dg.AssetObservation)]
    assert len(observations) <= 1 and all(o.asset_key == FRAUD_STREAM for o in observations)
    verdict = "passed" if evaluation.passed else "failed"
    assert result.skip_message == f"{CHECK_NAME} {verdict}: {evaluation.description}"
    return evaluation, (observations[0] if observations else None)


def test_no_status_fails_saying_how_to_start_the_supervisor():
    evaluation, observation = tick()
    assert not evaluation.passed and observation is None
    assert evaluation.description == (
        "the fraud stream's supervisor is not running (it never wrote its status in the NATS bucket "
        "fraud_stream): `wfp up` starts it, or the fraud-stream service in docker-compose"
    )


def test_a_stale_heartbeat_fails_while_the_stream_should_run():
    put_status(updated_at=ago(40), state="running", generation=1)
    evaluation, observation = tick()
    assert not evaluation.passed
    assert re.fullmatch(
        r"the fraud stream's supervisor is not running \(its last heartbeat was 4\d s ago, at "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\): `wfp up` starts it, or the fraud-stream service in docker-compose",
        evaluation.description,
    ), evaluation.description
    assert observation is not None and observation.metadata["heartbeat_age_s"].value >= 40


def test_transactions_waiting_without_progress_is_a_stall():
    put_status(state="running", pending=30, unacknowledged=10, progress_at=ago(90), rate_per_s=0.0)
    evaluation, _ = tick()
    assert not evaluation.passed
    assert re.fullmatch(
        r"stalled: 40 transactions waiting, no progress since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(9\d s\)",
        evaluation.description,
    ), evaluation.description


def test_the_ticks_events_are_recorded_on_the_asset_as_the_daemon_records_them():
    put_status(state="running", pending=7, progress_at=ago(120))
    with dg.instance_for_test() as instance:
        for event in evaluate_sensor(fraud_stream_health, instance).asset_events:
            instance.report_runless_asset_event(event)  # what the sensor daemon does with them
        key = dg.AssetCheckKey(FRAUD_STREAM, CHECK_NAME)
        execution = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        assert execution.status.value == "FAILED"
        assert execution.event.dagster_event.event_specific_data.description.startswith(
            "stalled: 7 transactions"
        )
        (observed,) = instance.fetch_observations(FRAUD_STREAM, limit=5).records
        assert observed.asset_observation.metadata["pending"].value == 7


@pytest.mark.parametrize("state", ["failed", "waiting"])
def test_a_failed_or_waiting_stream_fails_with_its_detail(state):
    put_status(state=state, detail="no model stored yet: run the fraud-model-training workflow first")
    evaluation, _ = tick()
    assert not evaluation.passed
    assert evaluation.description == (
        f"the fraud stream is {state}: no model stored yet: run the fraud-model-training workflow first"
    )


def test_a_healthy_stream_passes_and_its_figures_are_observed():
    desired = put_command("running", requested_by="run-health")
    put_status(
        state="running",
        generation=desired.generation,
        pid=4242,
        model_version="20251103T101500Z-hist_gradient_boosting-1a2b3c4d",
        acknowledged_sequence=1200,
        delivered_sequence=1203,
        pending=5,
        unacknowledged=3,
        rate_per_s=1500.0,
        progress_at=ago(3),
        updated_at=ago(2),
    )
    evaluation, observation = tick()
    assert evaluation.passed, evaluation.description
    assert evaluation.description == (
        "running: 8 transactions waiting, 1500 scored per second, model "
        "20251103T101500Z-hist_gradient_boosting-1a2b3c4d"
    )
    assert observation is not None and observation.description == evaluation.description
    figures = {key: value.value for key, value in observation.metadata.items()}
    assert figures | {"heartbeat_age_s": None, "progress_at": None} == {
        "state": "running",
        "detail": "",
        "lag": 8,
        "acknowledged_sequence": 1200,
        "delivered_sequence": 1203,
        "pending": 5,
        "unacknowledged": 3,
        "rate_per_s": 1500.0,
        "model_version": "20251103T101500Z-hist_gradient_boosting-1a2b3c4d",
        "heartbeat_age_s": None,
        "progress_at": None,
        "applied_generation": desired.generation,
        "desired": f"running (command {desired.generation} by run-health)",
    }
    assert 2 <= figures["heartbeat_age_s"] < 10
    assert ago(60) < dt.datetime.fromisoformat(figures["progress_at"]) < ago(3)
    # The same verdict when the check is executed on its own ("Execute check" in the UI).
    checked = dg.materialize(
        [fraud_stream_is_flowing],
        resources=service_resources(),
        selection=dg.AssetSelection.checks(fraud_stream_is_flowing),
    )
    (own,) = checked.get_asset_check_evaluations()
    assert own.passed and own.description == evaluation.description


def test_stopped_on_purpose_passes_saying_who_stopped_it():
    desired = put_command("stopped", requested_by="run-maintenance")
    # Even once its supervisor is gone: nothing should run.
    put_status(state="stopped", generation=desired.generation, updated_at=ago(300))
    evaluation, observation = tick()
    assert evaluation.passed, evaluation.description
    assert evaluation.description == (
        f"stopped on purpose by run-maintenance (command {desired.generation}); its supervisor is not running, a "
        "start waits for it: `wfp up` starts it, or the fraud-stream service in docker-compose"
    )
    assert observation is not None and observation.metadata["state"].value == "stopped"


def test_stopped_without_being_asked_fails():
    desired = put_command("running", requested_by="run-start")
    put_status(state="stopped", generation=desired.generation - 1)
    evaluation, _ = tick()
    assert not evaluation.passed
    assert evaluation.description == (
        f"the fraud stream is stopped while run-start asked it to run (command {desired.generation}; its "
        f"supervisor applied command {desired.generation - 1} last)"
    )


CHECK_EXECUTIONS = """
query ($key: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, limit: 5) {
    runId evaluation { success severity description }
  }
}"""


def test_wfp_ups_daemon_runs_the_sensor_and_records_the_check(tmp_path):
    with running_platform(tmp_path / "home") as platform:
        deadline = time.monotonic() + 120
        variables = {"key": {"path": [FRAUD_STREAM.to_user_string()]}, "check": CHECK_NAME}
        while not (
            executions := graphql(platform["dagster"], CHECK_EXECUTIONS, variables)["assetCheckExecutions"]
        ):
            assert time.monotonic() < deadline, "the sensor recorded no check evaluation in 120 s"
            time.sleep(2)
    evaluation = executions[0]["evaluation"]
    # Recorded by the sensor (no run), whatever the stream's state under this `wfp up`.
    assert executions[0]["runId"] == "" and evaluation["severity"] == "ERROR" and evaluation["description"]
    assert evaluation["success"] == evaluation["description"].startswith(("running: ", "stopped on purpose"))


# ---- the fraud plugin's stream actions ----------------------------------------------------------------------


def workflow(*steps: dict) -> dict:
    return {"name": "operate-fraud-stream", "steps": list(steps)}


def step(step_id: str, action: str, needs: tuple[str, ...] = (), **given: object) -> dict:
    return {"id": step_id, "plugin": "fraud", "action": action, "needs": list(needs), "input": given}


def valid(document: dict) -> WorkflowSpec:
    spec, problems = check_document(document, "wf.json")
    assert problems == [], [p.render() for p in problems]
    assert spec is not None
    return spec


def test_stream_actions_validate_their_input():
    document = workflow(
        step("replay-bad", "replayStream", **{"from": "yesterday"}),
        step("replay-naive", "replayStream", **{"from": "2025-11-03T00:00:00"}),
        step("replay-month", "replayStream", **{"from": "2025-13-01T00:00:00Z"}),
        step("replay-missing", "replayStream"),
        step("stop", "stopStream", timeoutSeconds=0),
        step("start", "startStream", timeout=5),
    )
    _, problems = check_document(document, "wf.json")
    assert [p.render() for p in problems] == [
        'wf.json:/steps/0/input/from: input should be a valid datetime or date, input is too short (got "yesterday")',
        'wf.json:/steps/1/input/from: input should have timezone info (got "2025-11-03T00:00:00")',
        "wf.json:/steps/2/input/from: input should be a valid datetime or date, month value is outside expected "
        'range of 1-12 (got "2025-13-01T00:00:00Z")',
        "wf.json:/steps/3/input/from: missing required key 'from' (hint: add it; `wfp schema` describes it)",
        "wf.json:/steps/4/input/timeoutSeconds: input should be greater than 0 (got 0)",
        "wf.json:/steps/5/input/timeout: unknown key 'timeout' (hint: check the spelling; `wfp schema` lists the "
        "allowed keys)",
    ]
    # A templated instant is checked once rendered, when the step runs.
    templated = workflow(step("replay", "replayStream", **{"from": "{{ params.since }}"}))
    valid(templated | {"params": {"since": {"type": "string", "default": "2025-11-03T00:00:00Z"}}})


def run(spec: WorkflowSpec, **params: object) -> dg.ExecuteInProcessResult:
    run_config = {"resources": {"workflow_params": {"config": params}}} if params else None
    return build_job(spec).execute_in_process(
        run_config=run_config, instance=dg.DagsterInstance.get(), raise_on_error=False
    )


def failure_of(result: dg.ExecuteInProcessResult, step_id: str) -> str:
    (failure,) = [e for e in result.all_events if e.is_step_failure and e.step_key == step_id]
    return failure.event_specific_data.user_failure_data.description


def test_a_command_no_supervisor_applies_fails_the_step_and_waits_in_the_bucket():
    since = "2025-11-03T00:00:00+00:00"
    spec = valid(
        workflow(step("replay", "replayStream", timeoutSeconds=1, **{"from": "{{ params.since }}"}))
        | {"params": {"since": {"type": "string"}}}
    )
    result = run(spec, since=since)
    assert not result.success
    desired = on_bucket(read_desired)
    assert desired is not None and desired.requested_by == result.run_id
    assert (desired.state, desired.replay_from) == ("running", dt.datetime.fromisoformat(since))
    assert failure_of(result, "replay").startswith(
        f"step replay (fraud.replayStream) failed: CommandNotApplied: the fraud stream's supervisor is not running "
        f"(it never reported): command {desired.generation} (replay from {since}) waits in the bucket and is "
        "applied when it starts; `wfp up` starts it, or the fraud-stream service in docker-compose"
    )


@pytest.fixture
def supervisor(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen]:
    """The real supervisor (`python -m workflow_platform.fraud_stream`) on the platform's control bucket, its
    pipeline reading subjects of the test's own, with a model stored and promoted as training does."""
    simulated = simulate_cached(
        SimulationConfig(n_customers=150, n_terminals=300, nb_days=20), tmp_path_factory.mktemp("ops-cache")
    ).transactions
    save_model(fit_model("hist_gradient_boosting", transform_features(simulated)))
    options = {
        "--persistence-dir": str(tmp_path / "persistence"),
        "--input-subject": "fsops.new",
        "--input-stream": "FSOPS",
        "--consumer": "fsops",
        "--alerts-subject": "fsops.alerts",
        "--alerts-stream": "FSOPS",
    }
    with (tmp_path / "supervisor.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "workflow_platform.fraud_stream", *itertools.chain(*options.items())],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    yield process
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, (tmp_path / "supervisor.log").read_text()[-3000:]


def test_a_workflow_stops_starts_and_replays_the_stream_with_the_real_supervisor(supervisor):
    since = "2025-11-03T00:00:00+00:00"
    spec = valid(
        workflow(
            step("stop", "stopStream"),
            step("start", "startStream", needs=("stop",)),
            step("replay", "replayStream", needs=("start",), **{"from": "{{ params.since }}"}),
        )
        | {"params": {"since": {"type": "string"}}}
    )
    result = run(spec, since=since)
    assert result.success, [e.message for e in result.all_events if e.is_step_failure]
    stop, start, replay = (result.output_for_node(name) for name in ("stop", "start", "replay"))
    for output, state in ((stop, "stopped"), (start, "running"), (replay, "running")):
        assert output["command"]["requested_by"] == result.run_id
        assert (output["command"]["state"], output["status"]["state"]) == (state, state)
        assert output["status"]["generation"] >= output["command"]["generation"]
    assert stop["status"]["pid"] is None and start["status"]["pid"] is not None
    assert start["command"]["generation"] == stop["command"]["generation"] + 1
    assert dt.datetime.fromisoformat(replay["command"]["replay_from"]) == dt.datetime.fromisoformat(since)
    assert replay["status"]["model_version"] and "lag" in replay["status"]
    evaluation, _ = tick()
    assert evaluation.passed and evaluation.description.startswith("running: "), evaluation.description
    # Stopped by a workflow: the check passes, naming the run.
    stopped = run(valid(workflow(step("stop", "stopStream"))))
    assert stopped.success
    evaluation, _ = tick()
    assert evaluation.passed
    assert evaluation.description.startswith(f"stopped on purpose by {stopped.run_id} (command ")


def test_commands_go_on_after_the_desired_key_was_deleted_or_purged():
    """An operator clearing the bucket by hand must not wedge the next command (a deleted key keeps its marker's
    revision), nor give it a generation the supervisor already applied (it would be ignored)."""
    put_status(state="running", generation=7)
    for clear in ("delete", "purge"):
        on_bucket(lambda bucket, clear=clear: getattr(bucket, clear)("desired"))
        assert on_bucket(read_desired) is None
        sent = on_bucket(lambda bucket: asyncio.wait_for(command(bucket, "stopped"), timeout=10))
        assert sent.generation == 8 and on_bucket(read_desired) == sent
        put_status(state="running", generation=7)  # as if the supervisor had not applied it: the same again
