"""HTTP plugins registered by URL (the original orchestrator's plugin registration), against a real local server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from workflow_platform.orchestration.catalog import check_document
from workflow_platform.orchestration.job import build_job
from workflow_platform.plugins import plugin_registry


class Scorer(BaseHTTPRequestHandler):
    """A small scoring service: POST /score doubles `value`; POST /reject answers 422."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status, answer = (
            (200, {"score": body["value"] * 2, "path": self.path})
            if self.path == "/score"
            else (422, {"error": "value rejected"})
        )
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        """GET /redirect?to=<url> answers 302 to that URL; every GET is counted."""
        type(self).gets.append(self.path)
        self.send_response(302)
        self.send_header("Location", self.path.partition("?to=")[2])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass

    gets: list[str] = []


@pytest.fixture
def scorer_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scorer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def registered(tmp_path, monkeypatch, scorer_url) -> None:
    monkeypatch.setenv("WFP_HTTP_ALLOW", f"public,{scorer_url}")  # the generic http.request step below
    registrations = [
        {"id": "scorer", "name": "Scorer", "baseUrl": scorer_url, "exposes": ["score", "reject"]}
    ]
    (tmp_path / "plugins.json").write_text(json.dumps(registrations))
    monkeypatch.setenv("WFP_PLUGINS_FILE", str(tmp_path / "plugins.json"))


def run(document: dict) -> dg.ExecuteInProcessResult:
    spec, problems = check_document(document)
    assert problems == [], problems
    return build_job(spec).execute_in_process(raise_on_error=False)


@pytest.mark.usefixtures("registered")
def test_registered_plugin_actions_post_to_the_service(scorer_url):
    assert "scorer" in plugin_registry()
    result = run(
        {
            "name": "scoring",
            "steps": [
                {"id": "score", "plugin": "scorer", "action": "score", "input": {"value": 21}},
                {
                    "id": "echo",
                    "plugin": "http",
                    "action": "request",
                    "needs": ["score"],
                    "input": {
                        "url": f"{scorer_url}/score",
                        "method": "POST",
                        "json": {"value": "{{ steps.score.result.score }}"},
                    },
                },
            ],
        }
    )
    assert result.success
    assert result.output_for_node("score") == {"score": 42, "path": "/score"}
    assert result.output_for_node("echo") == {"status": 200, "body": {"score": 84, "path": "/score"}}


@pytest.mark.usefixtures("registered")
def test_a_4xx_answer_fails_the_step_with_the_service_message():
    result = run(
        {
            "name": "rejected",
            "steps": [{"id": "r", "plugin": "scorer", "action": "reject", "input": {"value": 1}}],
        }
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "HTTP 422" in failure.event_specific_data.user_failure_data.description
    assert "value rejected" in failure.event_specific_data.user_failure_data.description


@pytest.mark.usefixtures("registered")
def test_unknown_action_of_a_registered_plugin_is_a_validation_error():
    spec, problems = check_document(
        {"name": "x", "steps": [{"id": "a", "plugin": "scorer", "action": "explode"}]}
    )
    assert spec is None
    assert problems[0].message == "plugin 'scorer' has no action 'explode'"


def request_failure(url: str) -> str:
    """Run a one-step workflow GETting `url`; it must fail: the step's failure message."""
    result = run(
        {
            "name": "probe",
            "steps": [{"id": "get", "plugin": "http", "action": "request", "input": {"url": url}}],
        }
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    return str(failure.event_specific_data.user_failure_data)


def test_steps_reach_no_loopback_or_private_address_unless_allowed(scorer_url, monkeypatch):
    """The platform's own services listen on loopback: a step may not call them (here: a loopback service)."""
    monkeypatch.delenv("WFP_HTTP_ALLOW", raising=False)
    Scorer.gets.clear()
    message = request_failure(f"{scorer_url}/redirect")
    assert "not allowed by WFP_HTTP_ALLOW='public'" in message and "127.0.0.1" in message
    assert Scorer.gets == []  # refused before any request left


def test_a_redirect_to_an_address_outside_the_allow_list_is_refused(scorer_url, monkeypatch):
    with ThreadingHTTPServer(("127.0.0.1", 0), Scorer) as other:
        target = f"http://127.0.0.1:{other.server_address[1]}/secret"
        monkeypatch.setenv("WFP_HTTP_ALLOW", scorer_url)  # the first server only
        Scorer.gets.clear()
        message = request_failure(f"{scorer_url}/redirect?to={target}")
    assert f"{target}: 127.0.0.1" in message
    assert Scorer.gets == [f"/redirect?to={target}"]  # the allowed server only, and once (not retried)
