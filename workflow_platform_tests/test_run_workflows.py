"""Workflows run through Dagster against the real services; assertions on what the services hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from workflow_platform.orchestration.catalog import check_document
from workflow_platform.orchestration.job import build_job
from workflow_platform_tests.conftest import fetch, grant_to_workflows, read_json_object, stream_messages, wfp

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"

pytestmark = pytest.mark.usefixtures("stack_env")


def execute(
    document: dict, params: dict | None = None
) -> tuple[dg.ExecuteInProcessResult, dg.DagsterInstance]:
    spec, problems = check_document(document)
    assert problems == [], [p.render() for p in problems]
    instance = dg.DagsterInstance.get()
    run_config = {"resources": {"workflow_params": {"config": params}}} if params else None
    result = build_job(spec).execute_in_process(
        run_config=run_config, instance=instance, raise_on_error=False
    )
    return result, instance


def step_events(result: dg.ExecuteInProcessResult, step: str) -> list[str]:
    return [e.event_type_value for e in result.all_events if e.step_key == step]


def test_minio_store_workflow_with_wfp_run(stack_env, pg, s3, tmp_path):
    completed = wfp("run", "minio-store-workflow", "--json", "--outputs", str(tmp_path))
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["status"] == "SUCCESS"
    assert {s["status"] for s in report["steps"].values()} == {"succeeded"}
    computed = report["steps"]["run-pathway"]["result"]
    assert computed["recordCount"] == 150 and computed["overall"]["count"] == 150
    # the object in the bucket holds the pipeline's computed result
    stored = read_json_object(s3, stack_env["WFP_S3_BUCKET"], "outputs/minio-store-workflow/result.json")
    assert stored == computed
    # ... it was downloaded to the outputs folder
    downloaded = tmp_path / "result.json"
    assert report["outputs"] == [str(downloaded)]
    assert json.loads(downloaded.read_text()) == computed
    # ... and the completion is recorded in orchestrator.events, with the run id
    rows = fetch(
        pg,
        "SELECT data FROM orchestrator.events WHERE event_type = 'workflow_completed' AND data->>'runId' = %s",
        report["run_id"],
    )
    assert (
        rows
        and rows[0][0]["object"]
        == f"s3://{stack_env['WFP_S3_BUCKET']}/outputs/minio-store-workflow/result.json"
    )
    # progress is shown per step
    assert "✔ run-pathway" in completed.stderr and "✔ emit-event" in completed.stderr


def test_original_format_workflow_touches_every_service(stack_env, pg, s3):
    fetch(
        pg,
        "INSERT INTO orchestrator.transactions (customer_id, amount) VALUES (1, 10.5), (2, 99.99) RETURNING id",
    )
    result, _ = execute(json.loads((FIXTURES / "orders-digest.json").read_text()))
    assert result.success
    orders = result.output_for_node("fetch_open_orders")
    assert orders["rowCount"] >= 2 and set(orders["rows"][0]) == {"id", "customer_id", "amount"}
    summary = result.output_for_node("summarise")
    assert summary["source"] == f"{orders['rowCount']} open orders"
    archived = result.output_for_node("archive_digest")
    assert (
        archived["key"].startswith("digests/")
        and read_json_object(s3, archived["bucket"], archived["key"]) == summary
    )
    published = result.output_for_node("announce")
    messages = stream_messages(stack_env["WFP_NATS_URL"], published["stream"], "digests.orders")
    seq, headers, body = next(m for m in messages if m[0] == published["seq"])
    assert body == {"type": "digest_ready", "records": 12}
    assert headers["Nats-Msg-Id"] == published["msgId"]
    assert fetch(
        pg,
        "SELECT data FROM orchestrator.events WHERE id = %s",
        result.output_for_node("log_done")["rows"][0]["id"],
    ) == [({"digest": "orders"},)]
    # lineage: what the run wrote is in the asset catalog, under the step's stable key, the object as metadata
    [materialization] = result.asset_materializations_for_node("archive_digest")
    assert materialization.asset_key == dg.AssetKey(["s3", "digests", "digest.json"])
    assert materialization.metadata["object"].value == f"s3://{archived['bucket']}/{archived['key']}"


def test_failing_step_is_retried_fails_the_run_and_skips_dependents(stack_env, s3):
    document = {
        "name": "failing-branch",
        "steps": [
            {
                "id": "read-missing",
                "plugin": "postgres",
                "action": "query",
                "retry": {"maxAttempts": 2, "delayMs": 10},
                "input": {"sql": "SELECT * FROM orchestrator.no_such_table"},
            },
            {
                "id": "store",
                "plugin": "minio",
                "action": "putObject",
                "needs": ["read-missing"],
                "input": {"key": "failing/never.json", "data": "{{ steps.read-missing.result }}"},
            },
            {
                "id": "independent",
                "plugin": "minio",
                "action": "putObject",
                "input": {"key": "failing/independent.json", "data": {"ok": True}},
            },
        ],
    }
    result, _ = execute(document)
    assert not result.success
    events = step_events(result, "read_missing")
    assert events.count("STEP_UP_FOR_RETRY") == 1 and events[-1] == "STEP_FAILURE"
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert (
        'relation "orchestrator.no_such_table" does not exist'
        in failure.event_specific_data.user_failure_data.description
    )
    assert "STEP_START" not in step_events(result, "store")
    assert result.output_for_node("independent")["key"] == "failing/independent.json"
    assert read_json_object(s3, stack_env["WFP_S3_BUCKET"], "failing/independent.json") == {"ok": True}


def test_step_timeout_cancels_the_call():
    document = {
        "name": "slow-step",
        "steps": [
            {
                "id": "sleep",
                "plugin": "postgres",
                "action": "query",
                "timeout": 300,
                "input": {"sql": "SELECT pg_sleep(5)"},
            }
        ],
    }
    result, _ = execute(document)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.user_failure_data.description
    assert "timed out" in message or "statement timeout" in message


def test_input_errors_are_not_retried_and_name_the_columns(pg):
    document = {
        "name": "bad-column",
        "steps": [
            {
                "id": "select",
                "plugin": "postgres",
                "action": "select",
                "retry": {"maxAttempts": 3, "delayMs": 10},
                "input": {"table": "orchestrator.events", "columns": ["id", "colour"]},
            }
        ],
    }
    result, _ = execute(document)
    assert not result.success
    assert "STEP_UP_FOR_RETRY" not in step_events(result, "select")
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    description = failure.event_specific_data.user_failure_data.description
    assert "'colour' not in table orchestrator.events" in description and "event_type" in description


def test_postgres_actions_and_params(pg):
    fetch(pg, "CREATE TABLE IF NOT EXISTS public.stock (sku text PRIMARY KEY, qty int NOT NULL, meta jsonb)")
    grant_to_workflows(pg, "public.stock")
    fetch(pg, "TRUNCATE public.stock")
    document = {
        "name": "stock-keeping",
        "params": {"threshold": {"type": "integer", "default": 3}},
        "steps": [
            {
                "id": "load",
                "plugin": "postgres",
                "action": "insert",
                "input": {
                    "table": "stock",
                    "rows": [
                        {"sku": "a", "qty": 1},
                        {"sku": "b", "qty": 5, "meta": {"x": 1}},
                        {"sku": "c", "qty": 9},
                    ],
                },
            },
            {
                "id": "merge",
                "plugin": "postgres",
                "action": "upsert",
                "needs": ["load"],
                "input": {
                    "table": "stock",
                    "conflict": ["sku"],
                    "rows": [{"sku": "a", "qty": 2}, {"sku": "d", "qty": 4}],
                },
            },
            {
                "id": "bump",
                "plugin": "postgres",
                "action": "update",
                "needs": ["merge"],
                "input": {"table": "stock", "data": {"qty": 0}, "where": {"sku": ["c"]}},
            },
            {
                "id": "low",
                "plugin": "postgres",
                "action": "select",
                "needs": ["bump"],
                "input": {
                    "table": "stock",
                    "where": {"qty": {"<": "{{ params.threshold }}"}},
                    "orderBy": "-sku",
                    "columns": ["sku", "qty"],
                },
            },
            {
                "id": "count",
                "plugin": "postgres",
                "action": "query",
                "needs": ["low"],
                "input": {
                    "sql": "SELECT count(*)::int AS n FROM stock WHERE qty >= :min AND meta IS NULL",
                    "params": {"min": "{{ params.threshold }}"},
                },
            },
            {
                "id": "drop",
                "plugin": "postgres",
                "action": "delete",
                "needs": ["count"],
                "input": {"table": "stock", "where": {"sku": {"in": ["a", "c"]}}},
            },
        ],
    }
    result, _ = execute(document, {"threshold": 3})
    assert result.success
    assert result.output_for_node("load")["rowCount"] == 3
    assert result.output_for_node("low")["rows"] == [{"sku": "c", "qty": 0}, {"sku": "a", "qty": 2}]
    assert result.output_for_node("count")["rows"] == [{"n": 1}]
    assert result.output_for_node("drop")["rowCount"] == 2
    assert fetch(pg, "SELECT sku, qty, meta FROM stock ORDER BY sku") == [("b", 5, {"x": 1}), ("d", 4, None)]


def test_update_without_where_is_refused(pg):
    document = {
        "name": "unsafe-update",
        "steps": [
            {
                "id": "all",
                "plugin": "postgres",
                "action": "update",
                "input": {"table": "orchestrator.events", "data": {"event_type": "x"}},
            }
        ],
    }
    result, _ = execute(document)
    assert not result.success
    assert fetch(pg, "SELECT count(*) FROM orchestrator.events WHERE event_type = 'x'") == [(0,)]


def test_update_rows_sets_each_row_its_own_values_in_one_transaction(pg):
    fetch(pg, "DROP TABLE IF EXISTS public.scores")
    fetch(pg, "CREATE TABLE public.scores (id int PRIMARY KEY, score float, flag boolean, seen timestamptz)")
    grant_to_workflows(pg, "public.scores", "SELECT, UPDATE")
    fetch(pg, "INSERT INTO public.scores (id) SELECT generate_series(1, 4)")
    rows = [
        {"id": 1, "score": 0.9, "flag": True},
        {"id": 3, "score": 0.1, "flag": False},
        {"id": 9, "score": 1},
    ]
    document = {
        "name": "write-scores",
        "steps": [
            {
                "id": "write",
                "plugin": "postgres",
                "action": "updateRows",
                "input": {"table": "scores", "rows": rows, "data": {"seen": "2025-01-02T03:04:05Z"}},
            }
        ],
    }
    result, _ = execute(document)
    assert result.success
    assert result.output_for_node("write")["rowCount"] == 2  # id 9 matches no row
    assert fetch(pg, "SELECT id, score, flag, seen IS NOT NULL FROM scores ORDER BY id") == [
        (1, 0.9, True, True),
        (2, None, None, False),
        (3, 0.1, False, True),
        (4, None, None, False),
    ]
    # Many rows: each page of the statement counts.
    fetch(pg, "INSERT INTO public.scores (id) SELECT generate_series(10, 1509)")
    document["steps"][0]["input"]["rows"] = [{"id": i, "score": i / 10} for i in range(10, 1510)]
    result, _ = execute(document)
    assert result.output_for_node("write")["rowCount"] == 1500
    assert fetch(pg, "SELECT count(*), sum(score) FROM scores WHERE id >= 10") == [
        (1500, sum(range(10, 1510)) / 10)
    ]
    # A row without its key fails the step before anything is written.
    document["steps"][0]["input"]["rows"] = [{"id": 2, "score": 0.5}, {"score": 0.7}]
    result, _ = execute(document)
    assert not result.success
    failures = [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]
    assert "row {'score': 0.7} has no value for key column(s) ['id']" in failures[0]
    assert fetch(pg, "SELECT score FROM scores WHERE id = 2") == [(None,)]


def test_publish_each_gives_every_item_its_own_message_once(stack_env):
    document = {
        "name": "alerts-once",
        "steps": [
            {
                "id": "first",
                "plugin": "nats",
                "action": "publishEach",
                "input": {"subject": "each.test", "messages": [{"tx": 1}, {"tx": 2}], "idField": "tx"},
            },
            {
                "id": "again",
                "plugin": "nats",
                "action": "publishEach",
                "needs": ["first"],
                "input": {"subject": "each.test", "messages": [{"tx": 2}, {"tx": 3}], "idField": "tx"},
            },
        ],
    }
    result, _ = execute(document)
    assert result.success
    assert result.output_for_node("first")["published"] == 2
    assert (result.output_for_node("again")["published"], result.output_for_node("again")["duplicates"]) == (
        1,
        1,
    )
    messages = stream_messages(stack_env["WFP_NATS_URL"], "EACH", "each.test")
    assert [(h["Nats-Msg-Id"], body) for _, h, body in messages] == [
        ("each.test:1", {"tx": 1}),
        ("each.test:2", {"tx": 2}),
        ("each.test:3", {"tx": 3}),
    ]


def test_publish_deduplicates_on_message_id(stack_env):
    document = {
        "name": "dedupe",
        "steps": [
            {
                "id": "first",
                "plugin": "nats",
                "action": "publish",
                "input": {"subject": "dedupe.test", "message": {"n": 1}, "msgId": "fixed-id"},
            },
            {
                "id": "again",
                "plugin": "nats",
                "action": "publish",
                "needs": ["first"],
                "input": {"subject": "dedupe.test", "message": {"n": 1}, "msgId": "fixed-id"},
            },
        ],
    }
    result, _ = execute(document)
    assert result.success
    assert result.output_for_node("first")["duplicate"] is False
    assert result.output_for_node("again")["duplicate"] is True
    assert len(stream_messages(stack_env["WFP_NATS_URL"], "DEDUPE", "dedupe.test")) == 1


def test_dagster_cli_executes_a_shipped_workflow(tmp_path):
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "job",
            "execute",
            "-m",
            "workflow_platform.definitions",
            "-j",
            "minio_store_workflow",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "RUN_SUCCESS" in completed.stderr + completed.stdout


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_large_results_go_by_reference(pg, s3, fmt):
    import io

    import pandas as pd

    fetch(
        pg,
        "CREATE TABLE IF NOT EXISTS public.readings (id int PRIMARY KEY, sensor text, value double precision)",
    )
    fetch(pg, "TRUNCATE public.readings")
    grant_to_workflows(pg, "public.readings", "SELECT")
    fetch(pg, "INSERT INTO public.readings SELECT i, 's' || (i % 3), i * 1.5 FROM generate_series(1, 25) i")
    document = {
        "name": f"by-reference-{fmt}",
        "steps": [
            {
                "id": "forced",
                "plugin": "postgres",
                "action": "select",
                "input": {"table": "readings", "output": "ref", "format": fmt, "orderBy": "id"},
            },
            {
                "id": "auto",
                "plugin": "postgres",
                "action": "query",
                "input": {
                    "sql": "SELECT * FROM readings WHERE id > :n ORDER BY id",
                    "params": {"n": 5},
                    "inlineMaxRows": 10,
                    "format": fmt,
                },
            },
            {
                "id": "small",
                "plugin": "postgres",
                "action": "query",
                "input": {"sql": "SELECT * FROM readings WHERE id <= 3 ORDER BY id", "inlineMaxRows": 10},
            },
        ],
    }
    result, _ = execute(document)
    assert result.success
    expected = pd.DataFrame(
        {
            "id": range(1, 26),
            "sensor": [f"s{i % 3}" for i in range(1, 26)],
            "value": [i * 1.5 for i in range(1, 26)],
        }
    )
    for node, rows in (("forced", expected), ("auto", expected[expected.id > 5].reset_index(drop=True))):
        reference = result.output_for_node(node)
        assert reference["format"] == fmt and reference["rowCount"] == len(rows)
        assert reference["columns"] == ["id", "sensor", "value"]
        bucket, key = reference["ref"].removeprefix("s3://").split("/", 1)
        body = s3.get_object(bucket, key).read()
        frame = {
            "parquet": pd.read_parquet,
            "csv": pd.read_csv,
            "jsonl": lambda b: pd.read_json(b, lines=True),
        }[fmt](io.BytesIO(body))
        pd.testing.assert_frame_equal(frame, rows, check_dtype=False)
        assert reference["preview"][0]["id"] == rows.id[0]
    assert result.output_for_node("small")["rows"][2] == {"id": 3, "sensor": "s0", "value": 4.5}


def test_a_placeholder_inside_a_quoted_literal_stays_text_and_values_stay_values(pg):
    """A parameter value never becomes SQL: `:v` inside '...' is not a placeholder (it used to be rewritten, and
    a value closing the quote ran its own statement); bound placeholders carry hostile values as data."""
    fetch(pg, "CREATE TABLE IF NOT EXISTS public.injection_target (name text)")
    fetch(pg, "TRUNCATE public.injection_target")
    grant_to_workflows(pg, "public.injection_target", "SELECT")
    fetch(pg, "INSERT INTO public.injection_target VALUES ('plain'), ('has :v inside')")
    hostile = "'; DROP TABLE public.injection_target; --"
    document = {
        "name": "quoted-placeholder",
        "params": {"v": {"type": "string", "default": hostile}},
        "steps": [
            {
                "id": "literal",
                "plugin": "postgres",
                "action": "query",
                "input": {
                    "sql": "SELECT count(*) AS n FROM public.injection_target WHERE name LIKE '%:v%'",
                    "params": {"v": "{{ params.v }}"},
                },
            },
            {
                "id": "bound",
                "plugin": "postgres",
                "action": "query",
                "input": {
                    "sql": "SELECT count(*) AS n FROM public.injection_target WHERE name LIKE '%' || :v || '%'",
                    "params": {"v": "{{ params.v }}"},
                },
            },
        ],
    }
    result, _ = execute(document)
    assert result.success
    assert result.output_for_node("literal")["rows"] == [{"n": 1}]  # the row whose text holds ':v'
    assert result.output_for_node("bound")["rows"] == [{"n": 0}]  # nobody is named after the hostile value
    assert fetch(pg, "SELECT count(*) FROM public.injection_target") == [(2,)]  # and the table is still there


def test_the_word_trigger_in_a_string_is_not_a_trigger_reference(stack_env, s3):
    """What a template reads comes from the template parser, not from looking for the word in the text."""
    document = {
        "name": "says-triggered",
        "steps": [
            {
                "id": "note",
                "plugin": "minio",
                "action": "putObject",
                "input": {
                    "key": "notes/{{ run.id }}.txt",
                    "data": "triggered by {{ run.id }}; no trigger here",
                },
            }
        ],
    }
    result, _ = execute(document)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    stored = s3.get_object(stack_env["WFP_S3_BUCKET"], f"notes/{result.run_id}.txt").read().decode()
    assert stored == f"triggered by {result.run_id}; no trigger here"
