from datetime import UTC, datetime

import pytest

from workflow_platform.language.templates import NOW, TemplateError, analyze, format_moment, render

CONTEXT = {
    "steps": {"fetch-orders": {"result": {"rows": [{"amount": 12.5, "id": 7}], "rowCount": 1}}},
    "params": {"region": "EU", "limit": 5},
    "run": {"id": "run-2", "root_id": "run-1", "started_at": "2025-10-31T13:40:00+00:00", "job_name": "j"},
    "workflow": {"name": "wf", "description": None},
    "trigger": {},
    NOW: "2025-10-31T12:57:03+00:00",  # run-1's start: run-2 re-executes it
}


def test_whole_value_templates_keep_their_type():
    assert render("{{ steps.fetch-orders.result }}", CONTEXT) == CONTEXT["steps"]["fetch-orders"]["result"]
    assert render("{{ steps.fetch-orders.result.rows[0].amount }}", CONTEXT) == 12.5
    assert render(" {{ params.limit }} ", CONTEXT) == 5
    assert render({"a": ["{{ steps.fetch-orders.result.rowCount }}"]}, CONTEXT) == {"a": [1]}


def test_templates_inside_text_are_interpolated():
    assert (
        render("orders-{{ params.region }}-{{ steps.fetch-orders.result.rows[0].id }}", CONTEXT)
        == "orders-EU-7"
    )
    # objects inside text become JSON, not Python reprs
    assert render("x={{ steps.fetch-orders.result.rows }}", CONTEXT) == 'x=[{"amount": 12.5, "id": 7}]'


def test_date_filter_uses_moment_tokens_and_the_root_run_start():
    # 'now' is when the run's root started, not this re-execution: the keys are the first run's.
    key = "alerts/{{ 'now' | date('YYYY-MM-DD/HH') }}/a-{{ 'now' | date('YYYYMMDDHHmmss') }}.json"
    assert render(key, CONTEXT) == "alerts/2025-10-31/12/a-20251031125703.json"
    assert render("{{ run.started_at | date('HH:mm') }}-{{ run.root_id }}", CONTEXT) == "13:40-run-1"
    moment = datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert format_moment(moment, "YY M D H m s [at] A ddd MMM") == "24 2 3 4 5 6 at AM Sat Feb"
    assert render("{{ '2024-01-02T03:04:05Z' | date('DD.MM.YYYY') }}", CONTEXT) == "02.01.2024"


def test_json_and_default_filters():
    assert render("{{ params.region | json }}", CONTEXT) == '"EU"'
    assert render("{{ params.missing | default('none') }}", CONTEXT) == "none"


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ steps.fetch-orders.result.__class__ }}",
        "{{ params.region.upper.__globals__ }}",
    ],
)
def test_python_internals_are_unreachable_at_run_time(template):
    with pytest.raises(TemplateError):
        render(template, CONTEXT)


def test_missing_paths_fail_with_the_template_in_the_message():
    with pytest.raises(TemplateError, match="nope"):
        render("{{ steps.fetch-orders.result.nope }}", CONTEXT)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ steps.unknown-step.result }}", "unknown step 'unknown-step'"),
        ("{{ steps.fetch-orders }}", "use 'steps.fetch-orders.result'"),
        ("{{ params.nope }}", "unknown param 'nope'"),
        ("{{ secrets.key }}", "unknown variable 'secrets'"),
        ("{{ now }}", "unknown variable 'now'"),
        ("{{ params.region | shout }}", "unknown filter 'shout'"),
        ("{{ params.region.__class__ }}", "Python internals"),
        ("{{ params['__class__'] }}", "Python internals"),
        ("{{ params.region.upper() }}", "function calls are not allowed"),
        ("{{ run.secret }}", "unknown run field 'secret'"),
        ("{% for x in y %}{% endfor %}", "only {{ expression }} templates"),
        ("{{ params.region ", "unclosed"),
        ("{{ 1 + }}", "syntax error"),
    ],
)
def test_static_analysis_rejects_bad_templates(template, expected):
    errors = analyze(template, {"region"}, {"fetch-orders"}).errors
    assert any(expected in message for message, _ in errors), errors


def test_static_analysis_collects_references():
    found = analyze(
        "{{ steps.fetch-orders.result.rows[0] }} {{ params.region }}", {"region"}, {"fetch-orders"}
    )
    assert found.errors == []
    assert found.steps == {"fetch-orders"}
    assert found.params == {"region"}
