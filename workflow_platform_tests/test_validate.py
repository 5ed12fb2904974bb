import copy
import json
from pathlib import Path

import pytest

from workflow_platform.orchestration.catalog import check_document, check_text

FIXTURES = Path(__file__).parent / "fixtures"
WORKFLOWS = Path(__file__).parent.parent / "workflows"


def base() -> dict:
    return json.loads((FIXTURES / "orders-digest.json").read_text())


def problems_of(document: dict) -> list[tuple[str, str]]:
    spec, problems = check_document(document, "wf.json")
    assert spec is None
    return [(p.pointer, p.message) for p in problems]


def test_fixture_in_the_original_format_is_valid():
    spec, problems = check_document(base(), "wf.json")
    assert problems == []
    assert [s.id for s in spec.steps][:2] == ["fetch-open-orders", "fetch-profiles"]


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*/workflow.json")), ids=lambda p: p.parent.name)
def test_shipped_workflows_are_valid(path):
    spec, problems = check_text(path.read_text(), str(path))
    assert problems == [], [p.render() for p in problems]


def test_malformed_json_names_line_and_column():
    spec, problems = check_text('{"name": "x",\n  steps: []}', "wf.json")
    assert spec is None
    assert problems[0].render().startswith("wf.json:/: malformed JSON: Expecting property name")
    assert "line 2, column 3" in problems[0].message


def test_missing_name_and_steps():
    assert problems_of({"description": "x"}) == [
        ("/name", "missing required key 'name'"),
        ("/steps", "missing required key 'steps'"),
    ]


def test_empty_steps_and_bad_name():
    found = problems_of({"name": "has space", "steps": []})
    assert found[0][0] == "/name" and "does not match" in found[0][1]
    assert found[1][0] == "/steps"


def test_unknown_keys_are_reported():
    document = base()
    document["stepz"] = []
    document["steps"][0]["input"]["limt"] = 3
    assert problems_of(document) == [
        ("/steps/0/input/limt", "unknown key 'limt'"),
        ("/stepz", "unknown key 'stepz'"),
    ]


def test_duplicate_step_id():
    document = base()
    document["steps"][1]["id"] = "fetch-open-orders"
    found = problems_of(document)
    assert ("/steps/1/id", "duplicate step id 'fetch-open-orders' (also used by /steps/0)") in found


def test_unknown_needs_target():
    document = base()
    document["steps"][1]["needs"] = ["fetch-everything"]
    found = problems_of(document)
    assert found[0] == ("/steps/1/needs/0", "unknown step 'fetch-everything' in needs")


def test_cycle_and_self_dependency():
    document = base()
    document["steps"][0]["needs"] = ["log-done"]
    found = problems_of(document)
    cycle = [m for p, m in found if "cycle" in m]
    assert cycle and "fetch-open-orders" in cycle[0] and "log-done" in cycle[0]
    document = base()
    document["steps"][2]["needs"].append("summarise")
    assert ("/steps/2/needs/2", "step 'summarise' needs itself") in problems_of(document)


def test_unknown_plugin_and_action_list_the_alternatives():
    document = base()
    document["steps"][0]["plugin"] = "mongodb"
    document["steps"][1]["action"] = "selectAll"
    spec, problems = check_document(document, "wf.json")
    rendered = [p.render() for p in problems]
    assert rendered[0].startswith("wf.json:/steps/0/plugin: unknown plugin 'mongodb'")
    assert "available plugins: fraud, http, minio, nats, pathway, postgres, report" in rendered[0]
    assert rendered[1].startswith("wf.json:/steps/1/action: plugin 'postgres' has no action 'selectAll'")
    assert "select" in problems[1].hint


def test_wrong_input_type():
    document = base()
    document["steps"][0]["input"]["limit"] = "ten"
    found = problems_of(document)
    assert found == [("/steps/0/input/limit", found[0][1])]
    assert "valid integer" in found[0][1] and '"ten"' in found[0][1]


def test_template_values_are_not_type_checked_statically():
    document = base()
    document["params"] = {"n": {"type": "integer", "default": 5}}
    document["steps"][0]["input"]["limit"] = "{{ params.n }}"
    assert check_document(document)[1] == []


def test_template_naming_a_step_that_is_not_upstream():
    document = base()
    document["steps"][4]["input"]["message"]["key"] = "{{ steps.archive-digest.result.key }}"
    found = problems_of(document)
    assert found == [
        (
            "/steps/4/input/message/key",
            "template refers to step 'archive-digest', which is not upstream of 'announce'",
        )
    ]


def test_template_reaching_an_ancestor_through_needs_is_fine():
    document = base()
    document["steps"][5]["input"]["data"]["data"] = "{{ steps.fetch-open-orders.result.rowCount }}"
    assert check_document(document)[1] == []


def test_unknown_filter_and_python_internals():
    document = base()
    document["steps"][3]["input"]["key"] = "{{ 'now' | strftime('%Y') }}"
    document["steps"][4]["input"]["subject"] = "{{ steps.summarise.result.__class__.__mro__ }}"
    found = problems_of(document)
    assert found[0][0] == "/steps/3/input/key" and "unknown filter 'strftime'" in found[0][1]
    assert found[1][0] == "/steps/4/input/subject" and "Python internals" in found[1][1]


def test_every_problem_is_reported_at_once():
    document = base()
    document["steps"][0]["input"]["limit"] = "ten"
    document["steps"][1]["plugin"] = "nope"
    document["steps"][2]["needs"] = ["fetch-open-orders", "ghost"]
    document["steps"][3]["input"]["data"] = "{{ params.ghost }}"
    assert len(problems_of(document)) == 4


def test_params_schedule_and_retry_extensions():
    document = copy.deepcopy(base())
    document["params"] = {"day": {"type": "string", "default": 3}}
    document["schedule"] = {"cron": "every day", "timezone": "Mars/Olympus", "params": {"other": 1}}
    document["steps"][0]["retry"] = {"maxAttempts": 0, "backoff": "sometimes"}
    found = dict(problems_of(document))
    assert "not a valid cron expression" in found["/schedule/cron"]
    assert "unknown timezone" in found["/schedule/timezone"]
    assert "/steps/0/retry/maxAttempts" in found and "/steps/0/retry/backoff" in found


def test_insert_needs_data_or_rows():
    document = base()
    del document["steps"][5]["input"]["data"]
    found = problems_of(document)
    assert found[0][0] == "/steps/5/input" and "exactly one of 'data'" in found[0][1]


def test_the_platforms_own_tags_are_not_the_workflows_to_set():
    """wfp/workflow carries the concurrency limits and the API's filters: a workflow cannot pose as another."""
    document = base()
    document["tags"] = {"wfp/workflow": "fraud-model-training", "team": "sales"}
    [(pointer, message)] = problems_of(document)
    assert pointer == "/tags" and "tag 'wfp/workflow' is reserved" in message
