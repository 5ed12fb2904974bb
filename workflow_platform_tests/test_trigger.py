"""A workflow `trigger` on new table rows becomes a Dagster sensor: batches by cursor, one run per batch."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import closing

import dagster as dg
import psycopg2
import pytest

from workflow_platform.orchestration.catalog import check_document
from workflow_platform.orchestration.job import build_job
from workflow_platform.orchestration.row_cursor import RowCursor
from workflow_platform.orchestration.triggers import build_sensor
from workflow_platform.orchestration.workflow_run import TRIGGER_TAG
from workflow_platform_tests.conftest import evaluate_sensor, fetch, grant_to_workflows

WORKFLOW = {
    "name": "score-new-payments",
    "trigger": {
        "type": "postgres",
        "table": "public.payments",
        "column": "id",
        "batchSize": 3,
        "intervalSeconds": 5,
    },
    "steps": [
        {
            "id": "batch",
            "plugin": "postgres",
            "action": "select",
            "input": {
                "table": "public.payments",
                "where": {"id": {">": "{{ trigger.after }}", "<=": "{{ trigger.through }}"}},
                "orderBy": "id",
            },
        },
        {
            "id": "mark",
            "plugin": "postgres",
            "action": "update",
            "needs": ["batch"],
            "input": {
                "table": "public.payments",
                "data": {"scored_by": "{{ run.id }}"},
                "where": {"id": {">": "{{ trigger.after }}", "<=": "{{ trigger.through }}"}},
            },
        },
    ],
}


@pytest.fixture
def payments(pg):
    fetch(pg, "DROP TABLE IF EXISTS public.payments")
    fetch(pg, "CREATE TABLE public.payments (id bigserial PRIMARY KEY, amount numeric, scored_by text)")
    fetch(pg, "INSERT INTO public.payments (amount) SELECT g FROM generate_series(1, 7) g")
    grant_to_workflows(pg, "public.payments", "SELECT, UPDATE")
    yield
    fetch(pg, "DROP TABLE public.payments")


def ticker(
    sensor: dg.SensorDefinition, instance: dg.DagsterInstance
) -> Callable[[str | None], dg.SensorResult]:
    """The sensor evaluated on `instance` from a cursor, as the daemon's tick does."""
    return lambda cursor: evaluate_sensor(sensor, instance, cursor)


def sensor_and_job():
    spec, problems = check_document(WORKFLOW)
    assert problems == []
    job = build_job(spec)
    return build_sensor(spec, job), job


@pytest.mark.usefixtures("payments")
def test_new_rows_become_one_run_per_batch_and_every_row_is_scored_once(pg):
    sensor, job = sensor_and_job()
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING and sensor.minimum_interval_seconds == 5
    with dg.instance_for_test() as instance:
        first = evaluate_sensor(sensor, instance)
        assert [r.run_key for r in first.run_requests] == [
            "public.payments:0-3",
            "public.payments:3-6",
            "public.payments:6-7",
        ]
        assert RowCursor.parse(first.cursor) == RowCursor.start(7)
        quiet = evaluate_sensor(sensor, instance, first.cursor)
        assert quiet.run_requests == [] and "no rows" in quiet.skip_message
        fetch(pg, "INSERT INTO public.payments (amount) VALUES (8), (9)")
        later = evaluate_sensor(sensor, instance, first.cursor)
        assert [r.run_key for r in later.run_requests] == ["public.payments:7-9"]
        assert RowCursor.parse(later.cursor) == RowCursor.start(9)
        # Real runs, one per request, as the daemon launches them.
        for request in [*first.run_requests, *later.run_requests]:
            result = job.execute_in_process(instance=instance, tags=request.tags)
            assert result.success
        batch = job.execute_in_process(instance=instance, tags=first.run_requests[1].tags).output_for_node(
            "batch"
        )
        assert [row["id"] for row in batch["rows"]] == [4, 5, 6]
    scored = fetch(
        pg, "SELECT count(*), count(DISTINCT scored_by) FROM public.payments WHERE scored_by IS NOT NULL"
    )
    assert scored == [(9, 4)]  # every row scored, one run id per batch (the re-run rewrote its own batch)


@pytest.mark.usefixtures("payments")
def test_a_row_committed_after_a_higher_id_is_processed_not_skipped(pg, stack_env):
    """Two writers: A takes an id and commits after B, which took the next one. The batch waits for A."""
    sensor, _ = sensor_and_job()
    with (
        dg.instance_for_test() as instance,
        closing(psycopg2.connect(stack_env["WFP_PG_ADMIN_DSN"])) as writer,
    ):
        tick = ticker(sensor, instance)
        first = tick(None)
        with writer.cursor() as a:
            a.execute("INSERT INTO public.payments (amount) VALUES (8)")  # id 8, not committed yet
        fetch(pg, "INSERT INTO public.payments (amount) VALUES (9)")  # id 9, committed first
        held = tick(first.cursor)
        assert held.run_requests == [] and "waiting for 1 transaction(s)" in held.skip_message
        assert tick(held.cursor).run_requests == []  # still open
        writer.commit()
        settled = tick(held.cursor)
        assert [r.run_key for r in settled.run_requests] == ["public.payments:7-9"]
        # An id taken with nextval before the transaction writes anything is waited for too.
        with writer.cursor() as a:
            a.execute("SELECT nextval('public.payments_id_seq')")
            (taken,) = a.fetchone()
        fetch(pg, "INSERT INTO public.payments (amount) VALUES (11)")
        assert tick(settled.cursor).run_requests == []
        with writer.cursor() as a:
            a.execute("INSERT INTO public.payments (id, amount) VALUES (%s, 10)", (taken,))
        writer.commit()
        assert [r.run_key for r in tick(settled.cursor).run_requests] == ["public.payments:9-11"]
        # A cursor of an earlier version (the last id handed to runs) is read as such.
        assert [r.run_key for r in tick("9").run_requests] == ["public.payments:9-11"]


def test_trigger_payload_reaches_the_templates(stack_env):
    """A sensor's run carries its batch in the run's tags; steps read it as `{{ trigger.* }}`."""
    echo = {
        "name": "echo-trigger",
        "trigger": WORKFLOW["trigger"],
        "steps": [
            {
                "id": "echo",
                "plugin": "postgres",
                "action": "query",
                "input": {
                    "sql": "SELECT :after AS after, :through AS through, :count AS count",
                    "params": {k: f"{{{{ trigger.{k} }}}}" for k in ("after", "through", "count")},
                },
            }
        ],
    }
    spec, problems = check_document(echo)
    assert problems == []
    batch = {"table": "public.payments", "column": "id", "after": 40, "through": 45, "count": 5}
    result = build_job(spec).execute_in_process(tags={TRIGGER_TAG: json.dumps(batch)})
    assert result.success
    assert result.output_for_node("echo")["rows"] == [{"after": 40, "through": 45, "count": 5}]


@pytest.mark.usefixtures("payments")
def test_start_after_latest_leaves_the_backlog_and_takes_new_rows(pg):
    document = {**WORKFLOW, "trigger": {**WORKFLOW["trigger"], "startAfter": "latest"}}
    spec, problems = check_document(document)
    assert problems == []
    sensor = build_sensor(spec, build_job(spec))
    with dg.instance_for_test() as instance:
        first = evaluate_sensor(sensor, instance)
        assert first.run_requests == [] and "> 7 will be processed" in first.skip_message
        assert RowCursor.parse(first.cursor) == RowCursor.start(7)
        fetch(pg, "INSERT INTO public.payments (amount) VALUES (8)")
        later = evaluate_sensor(sensor, instance, first.cursor)
        assert [r.run_key for r in later.run_requests] == ["public.payments:7-8"]


def test_start_after_latest_on_an_empty_table_takes_the_first_load_as_history(pg, stack_env):
    """The fresh-stack case: the sensor's first tick meets an empty table, then the demo data is bulk-loaded
    (while another writer has a row open); only the rows committed after the load and that writer become runs."""
    fetch(pg, "DROP TABLE IF EXISTS public.payments")
    fetch(pg, "CREATE TABLE public.payments (id bigserial PRIMARY KEY, amount numeric, scored_by text)")
    grant_to_workflows(pg, "public.payments", "SELECT, UPDATE")
    document = {**WORKFLOW, "trigger": {**WORKFLOW["trigger"], "startAfter": "latest"}}
    spec, problems = check_document(document)
    assert problems == []
    sensor = build_sensor(spec, build_job(spec))
    try:
        with (
            dg.instance_for_test() as instance,
            closing(psycopg2.connect(stack_env["WFP_PG_ADMIN_DSN"])) as writer,
        ):
            tick = ticker(sensor, instance)
            first = tick(None)
            assert first.run_requests == [] and "public.payments is empty" in first.skip_message
            assert tick(first.cursor).cursor == first.cursor  # still empty: still waiting for the first rows
            with writer.cursor() as open_row:
                open_row.execute("INSERT INTO public.payments (amount) VALUES (0)")  # id 1, not committed
            fetch(pg, "INSERT INTO public.payments (amount) SELECT g FROM generate_series(1, 50) g")  # 2..51
            held = tick(first.cursor)
            assert held.run_requests == [] and "waiting for 1 transaction(s)" in held.skip_message
            writer.commit()
            started = tick(held.cursor)
            assert started.run_requests == []  # 50 rows in batches of 3 would be 17 runs
            assert "rows with id > 51 will be processed" in started.skip_message
            assert RowCursor.parse(started.cursor) == RowCursor.start(51)
            fetch(pg, "INSERT INTO public.payments (amount) VALUES (52), (53)")
            later = tick(started.cursor)
            assert [r.run_key for r in later.run_requests] == ["public.payments:51-53"]
    finally:
        fetch(pg, "DROP TABLE public.payments")


def test_shipped_fraud_detection_has_its_sensor_in_the_code_location():
    from workflow_platform.definitions import defs

    sensor = defs.get_sensor_def("fraud_detection_workflow_on_new_rows")
    assert sensor.job_name == "fraud_detection_workflow"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


@pytest.mark.usefixtures("payments")
def test_a_run_without_a_batch_fails_saying_how_to_give_one(pg, tmp_path):
    import json

    from click.testing import CliRunner

    from workflow_platform.cli.main import main

    sensor, job = sensor_and_job()
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    (failure,) = [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]
    assert "this run has no batch of rows" in failure and "--rows AFTER:THROUGH" in failure

    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(WORKFLOW))
    refused = CliRunner().invoke(main, ["run", str(path)])
    assert refused.exit_code == 2 and "score_new_payments_on_new_rows launches its runs" in refused.output
    assert CliRunner().invoke(main, ["run", str(path), "--rows", "5:2"]).exit_code == 2
    by_hand = CliRunner().invoke(main, ["run", str(path), "--rows", "2:5"])
    assert by_hand.exit_code == 0, by_hand.output
    assert "batch: 3 rows of public.payments" in by_hand.output
    scored = fetch(pg, "SELECT id FROM public.payments WHERE scored_by IS NOT NULL ORDER BY id")
    assert scored == [(3,), (4,), (5,)]
