"""`wfp` as a user types it: exit codes, messages with file and JSON pointer, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from workflow_platform_tests.conftest import wfp

FIXTURES = Path(__file__).parent / "fixtures"


def digest() -> dict:
    return json.loads((FIXTURES / "orders-digest.json").read_text())


def broken(tmp_path: Path, name: str, change) -> Path:
    document = digest()
    change(document)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(document, indent=2))
    return path


def _set(path: list, value):
    def change(document):
        node = document
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


BAD_INPUTS = {
    "missing-name": (lambda d: d.pop("name"), "/name: missing required key 'name'"),
    "missing-steps": (lambda d: d.pop("steps"), "/steps: missing required key 'steps'"),
    "duplicate-id": (_set(["steps", 1, "id"], "fetch-open-orders"), "/steps/1/id: duplicate step id"),
    "unknown-need": (_set(["steps", 1, "needs"], ["nowhere"]), "/steps/1/needs/0: unknown step 'nowhere'"),
    "cycle": (_set(["steps", 0, "needs"], ["log-done"]), "/steps/0/needs: dependency cycle: "),
    "self-dependency": (
        _set(["steps", 1, "needs"], ["fetch-profiles"]),
        "/steps/1/needs/0: step 'fetch-profiles' needs itself",
    ),
    "unknown-plugin": (_set(["steps", 0, "plugin"], "kafka"), "/steps/0/plugin: unknown plugin 'kafka'"),
    "unknown-action": (
        _set(["steps", 0, "action"], "drop"),
        "/steps/0/action: plugin 'postgres' has no action 'drop'",
    ),
    "wrong-type": (
        _set(["steps", 0, "input", "limit"], "ten"),
        "/steps/0/input/limit: input should be a valid integer",
    ),
    "not-upstream": (
        _set(["steps", 0, "input", "table"], "{{ steps.log-done.result.table }}"),
        "/steps/0/input/table: template refers to step 'log-done', which is not upstream of 'fetch-open-orders'",
    ),
    "unknown-filter": (
        _set(["steps", 3, "input", "key"], "{{ 'now' | shout }}"),
        "/steps/3/input/key: unknown filter 'shout'",
    ),
    "python-internals": (
        _set(["steps", 3, "input", "key"], "{{ steps.summarise.result.__class__.__init__.__globals__ }}"),
        "/steps/3/input/key: '__globals__': access to Python internals is not allowed",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_validate_reports_each_bad_input_precisely(tmp_path, case):
    change, expected = BAD_INPUTS[case]
    path = broken(tmp_path, case, change)
    completed = wfp("validate", str(path))
    assert completed.returncode == 2
    assert f"{path}:{expected}" in completed.stderr, completed.stderr
    assert "Traceback" not in completed.stderr


def test_malformed_json(tmp_path):
    path = tmp_path / "malformed.json"
    path.write_text('{"name": "x", "steps": [}')
    completed = wfp("validate", str(path))
    assert completed.returncode == 2
    assert completed.stderr.startswith(f"{path}:/: malformed JSON: ")
    assert "line 1, column 25" in completed.stderr and "Traceback" not in completed.stderr


def test_validate_accepts_valid_files_and_folders(tmp_path):
    (tmp_path / "digest").mkdir()
    (tmp_path / "digest" / "workflow.json").write_text(json.dumps(digest()))
    completed = wfp("validate", str(tmp_path), str(FIXTURES / "orders-digest.json"))
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.count("ok (orders-digest, 6 steps)") == 2


def test_validate_json_output(tmp_path):
    path = broken(tmp_path, "wrong", _set(["steps", 0, "plugin"], "kafka"))
    completed = wfp("validate", "--json", str(path))
    assert completed.returncode == 2
    report = json.loads(completed.stdout)
    assert report["valid"] is False and report["problems"][0]["pointer"] == "/steps/0/plugin"


def test_schema_command_prints_the_json_schema():
    completed = wfp("schema")
    assert completed.returncode == 0
    schema = json.loads(completed.stdout)
    assert schema["properties"]["steps"]["items"] == {"$ref": "#/$defs/StepSpec"}


@pytest.mark.usefixtures("stack_env")
@pytest.mark.parametrize("case", ["wrong-type", "cycle", "unknown-plugin"])
def test_run_refuses_an_invalid_workflow_without_starting_a_run(tmp_path, case):
    change, expected = BAD_INPUTS[case]
    path = broken(tmp_path, case, change)
    runs_before = len(dg.DagsterInstance.get().get_run_records())
    completed = wfp("run", str(path))
    assert completed.returncode == 2
    assert expected in completed.stderr and "nothing was run" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert len(dg.DagsterInstance.get().get_run_records()) == runs_before


@pytest.mark.usefixtures("stack_env")
def test_run_refuses_a_table_that_does_not_exist(tmp_path):
    path = broken(tmp_path, "no-table", _set(["steps", 0, "input", "table"], "orchestrator.transaktions"))
    runs_before = len(dg.DagsterInstance.get().get_run_records())
    completed = wfp("run", str(path))
    assert completed.returncode == 2, completed.stderr
    assert (
        f"{path}:/steps/0/input/table: table 'orchestrator.transaktions' does not exist" in completed.stderr
    )
    assert "orchestrator.transactions" in completed.stderr  # the tables that do exist are listed
    assert "Traceback" not in completed.stderr
    assert len(dg.DagsterInstance.get().get_run_records()) == runs_before


@pytest.mark.usefixtures("stack_env")
def test_run_exits_1_when_a_step_fails(tmp_path):
    path = tmp_path / "fails.json"
    path.write_text(
        json.dumps(
            {
                "name": "fails",
                "steps": [
                    {
                        "id": "boom",
                        "plugin": "postgres",
                        "action": "query",
                        "input": {"sql": "SELECT 1 / (count(*) - count(*)) FROM orchestrator.events"},
                    },
                    {
                        "id": "after",
                        "plugin": "postgres",
                        "action": "query",
                        "needs": ["boom"],
                        "input": {"sql": "SELECT 1"},
                    },
                ],
            }
        )
    )
    completed = wfp("run", str(path), "--json", "--outputs", str(tmp_path / "out"))
    assert completed.returncode == 1
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["status"] == "FAILURE"
    assert (
        report["steps"]["boom"]["status"] == "failed"
        and "division by zero" in report["steps"]["boom"]["error"]
    )
    assert report["steps"]["after"]["status"] == "skipped"
    assert "Traceback" not in completed.stderr


def test_unknown_workflow_name():
    completed = wfp("run", "no-such-workflow")
    assert completed.returncode == 2
    assert "no workflow file, folder or name 'no-such-workflow'" in completed.stderr


@pytest.mark.usefixtures("stack_env")
def test_run_refuses_sql_that_does_not_plan(tmp_path):
    path = tmp_path / "bad-sql.json"
    step = {
        "id": "q",
        "plugin": "postgres",
        "action": "query",
        "input": {"sql": "SELECT amount FROM orchestrator.orders WHERE id = :id", "params": {"id": 1}},
    }
    path.write_text(json.dumps({"name": "bad-sql", "steps": [step]}))
    completed = wfp("run", str(path))
    assert completed.returncode == 2, completed.stderr
    assert (
        f'{path}:/steps/0/input/sql: the query does not plan: ERROR:  relation "orchestrator.orders" does not exist'
        in completed.stderr
    )
    assert "Traceback" not in completed.stderr
