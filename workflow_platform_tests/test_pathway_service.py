"""The Pathway service, run for real as a subprocess: HTTP contract, sample-pipeline results, bad input, stop.

The ETL pipelines' results are tested in test_pathway_pipelines.py, against the embedded stack.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from workflow_platform.pathway_service.pipelines.sample import sample_records
from workflow_platform.stack.pathway_launcher import start_pathway_service
from workflow_platform.stack.processes import free_ports, stop_child

# A result rounded to 2 decimals is within half a cent of the exact value (plus float noise).
ROUNDING = 0.005 + 1e-9
PIPELINES = [
    "sample-pipeline",
    "sales-aggregation-pipeline",
    "fraud-detection-pipeline",
    "fraud-features-pipeline",
    "risk-scoring-pipeline",
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a service started for this module, stopped (and checked to stop cleanly) at the end."""
    (port,) = free_ports()
    process = start_pathway_service("127.0.0.1", port, tmp_path_factory.mktemp("pathway") / "service.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        assert stop_child(process) == 0


def run_sample(service: str, body: Any) -> requests.Response:
    return requests.post(f"{service}/pipelines/sample-pipeline/run", json=body, timeout=60)


def post_raw(service: str, body: bytes) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    return requests.post(f"{service}/pipelines/sample-pipeline/run", data=body, headers=headers, timeout=60)


def assert_matches_pandas(result: dict[str, Any], count: int, source: str | None) -> None:
    """Compare an answer field by field with the same aggregation done by pandas on `sample_records`."""
    frame = pd.DataFrame(sample_records(count), columns=["id", "category", "value"])
    expected = frame.groupby("category")["value"].agg(["count", "sum", "mean"]).sort_index()

    assert result["pipelineId"] == "sample-pipeline"
    assert result["source"] == source
    assert result["recordCount"] == count
    assert result["overall"]["count"] == len(frame)
    assert result["overall"]["sum"] == pytest.approx(frame["value"].sum(), abs=ROUNDING)
    if count:
        assert result["overall"]["average"] == pytest.approx(frame["value"].mean(), abs=ROUNDING)
    else:
        assert result["overall"]["average"] is None
    assert [row["category"] for row in result["categories"]] == list(expected.index)
    for row, (category, figures) in zip(result["categories"], expected.iterrows(), strict=True):
        assert row["category"] == category
        assert row["count"] == figures["count"]
        assert row["sum"] == pytest.approx(figures["sum"], abs=ROUNDING)
        assert row["average"] == pytest.approx(figures["mean"], abs=ROUNDING)
    for number in [
        result["overall"]["sum"],
        *(row[key] for row in result["categories"] for key in ("sum", "average")),
    ]:
        assert round(number, 2) == number


def test_health(service: str) -> None:
    response = requests.get(f"{service}/health", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "pipelines": PIPELINES}


def test_pipeline_list_describes_inputs(service: str) -> None:
    response = requests.get(f"{service}/pipelines", timeout=10)
    assert response.status_code == 200
    described = {pipeline["id"]: pipeline for pipeline in response.json()["pipelines"]}
    assert list(described) == PIPELINES
    for pipeline in described.values():
        assert pipeline["description"] and pipeline["input"]["additionalProperties"] is False
    assert described["sales-aggregation-pipeline"]["input"]["required"] == ["salesData"]
    sales_data = described["sales-aggregation-pipeline"]["input"]["properties"]["salesData"]
    assert len(sales_data["oneOf"]) == 3  # rows, {rows}, {ref, format}
    assert described["fraud-detection-pipeline"]["input"]["required"] == ["transactions"]
    assert described["risk-scoring-pipeline"]["input"]["required"] == ["fraudAnalysis"]
    sample = described["sample-pipeline"]
    assert sample["description"]
    properties = sample["input"]["properties"]
    assert properties["count"]["type"] == "integer"
    assert (properties["count"]["minimum"], properties["count"]["maximum"]) == (0, 1_000_000)
    assert properties["count"]["default"] == 100
    assert "source" in properties
    assert sample["input"]["additionalProperties"] is False


def test_sample_pipeline_matches_pandas(service: str) -> None:
    # The body the minio-store reference workflow sends.
    response = run_sample(service, {"source": "local", "count": 150})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    result = response.json()
    assert_matches_pandas(result, 150, "local")
    assert {row["category"] for row in result["categories"]} == {"books", "electronics", "garden", "toys"}


def test_sample_pipeline_count_zero(service: str) -> None:
    response = run_sample(service, {"count": 0})
    assert response.status_code == 200
    assert response.json() == {
        "pipelineId": "sample-pipeline",
        "source": None,
        "recordCount": 0,
        "overall": {"count": 0, "sum": 0, "average": None},
        "categories": [],
    }


@pytest.mark.parametrize("body", [{}, b""], ids=["empty-object", "empty-body"])
def test_sample_pipeline_defaults(service: str, body: dict | bytes) -> None:
    response = post_raw(service, body) if isinstance(body, bytes) else run_sample(service, body)
    assert response.status_code == 200
    assert_matches_pandas(response.json(), 100, None)


def test_sample_pipeline_is_deterministic(service: str) -> None:
    first = run_sample(service, {"source": "again", "count": 1234}).json()
    second = run_sample(service, {"source": "again", "count": 1234}).json()
    assert first == second
    assert_matches_pandas(first, 1234, "again")


def test_concurrent_requests_get_their_own_answers(service: str) -> None:
    counts = [0, 1, 2, 3, 50, 150, 999, 5000, 150, 7]
    bodies = [{"source": f"client-{index}", "count": count} for index, count in enumerate(counts)]
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        responses = list(pool.map(lambda body: run_sample(service, body), bodies))
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200, response.text
        assert_matches_pandas(response.json(), body["count"], body["source"])


INVALID_INPUTS = {
    "count-not-a-number": (b'{"count": "abc"}', "count", "count: Input should be a valid integer"),
    "count-numeric-string": (b'{"count": "150"}', "count", "count: Input should be a valid integer"),
    "count-fraction": (b'{"count": 1.5}', "count", "count: Input should be a valid integer"),
    "count-boolean": (b'{"count": true}', "count", "count: Input should be a valid integer"),
    "count-null": (b'{"count": null}', "count", "count: Input should be a valid integer"),
    "count-negative": (b'{"count": -1}', "count", "count: Input should be greater than or equal to 0"),
    "count-too-large": (
        b'{"count": 1000001}',
        "count",
        "count: Input should be less than or equal to 1000000",
    ),
    "source-not-a-string": (b'{"source": 7}', "source", "source: Input should be a valid string"),
    "unknown-field": (b'{"count": 5, "colour": "red"}', "colour", "colour: Extra inputs are not permitted"),
    "array": (b"[1, 2]", "body", "request body must be a JSON object, got an array"),
    "string": (b'"text"', "body", "request body must be a JSON object, got a string"),
    "number": (b"42", "body", "request body must be a JSON object, got a number"),
    "null": (b"null", "body", "request body must be a JSON object, got null"),
}
NOT_JSON = {
    "broken-json": (b'{"count": 5', "request body is not valid JSON"),
    "not-utf8": (b"\xff\xfe{}", "request body is not valid UTF-8"),
}


@pytest.mark.parametrize(("body", "field", "message"), INVALID_INPUTS.values(), ids=INVALID_INPUTS.keys())
def test_invalid_input_is_a_422_naming_the_field(service: str, body: bytes, field: str, message: str) -> None:
    response = post_raw(service, body)
    assert response.status_code == 422
    assert response.headers["Content-Type"].startswith("application/json")
    answer = response.json()
    assert answer["error"].startswith("invalid input for sample-pipeline: ")
    assert message in answer["error"]
    assert [problem["field"] for problem in answer["problems"]] == [field]


@pytest.mark.parametrize(("body", "message"), NOT_JSON.values(), ids=NOT_JSON.keys())
def test_a_body_that_is_not_json_is_a_400(service: str, body: bytes, message: str) -> None:
    response = post_raw(service, body)
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/json")
    assert message in response.json()["error"]


def test_a_body_over_the_limit_is_a_413(service: str) -> None:
    response = post_raw(service, b'{"source": "' + b"x" * (1024 * 1024) + b'"}')
    assert response.status_code == 413
    assert "1048576" in response.json()["error"]


def test_service_keeps_serving_after_invalid_input(service: str) -> None:
    for body, *_ in [*INVALID_INPUTS.values(), *NOT_JSON.values()]:
        assert post_raw(service, body).status_code in (400, 422)
    assert requests.get(f"{service}/health", timeout=10).status_code == 200
    assert_matches_pandas(run_sample(service, {"count": 10}).json(), 10, None)


def test_unknown_pipeline_is_a_404_listing_the_pipelines(service: str) -> None:
    response = requests.post(f"{service}/pipelines/no-such-pipeline/run", json={}, timeout=10)
    assert response.status_code == 404
    answer = response.json()
    assert answer["pipelines"] == PIPELINES
    assert "unknown pipeline 'no-such-pipeline'" in answer["error"]
    assert "sales-aggregation-pipeline" in answer["error"]


def test_unknown_route_is_a_404(service: str) -> None:
    response = requests.get(f"{service}/no/such/route", timeout=10)
    assert response.status_code == 404
    assert "no route GET /no/such/route" in response.json()["error"]


def test_wrong_method_is_a_405(service: str) -> None:
    response = requests.get(f"{service}/pipelines/sample-pipeline/run", timeout=10)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert "method GET not allowed" in response.json()["error"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stops_cleanly_on_signal(tmp_path: Path, signum: signal.Signals) -> None:
    log_path = tmp_path / "service.log"
    process = start_pathway_service("127.0.0.1", free_ports()[0], log_path)
    try:
        process.send_signal(signum)
        assert process.wait(timeout=30) == 0
    finally:
        stop_child(process)
    log = log_path.read_text()
    assert f"received {signum.name}, stopping" in log
    assert "Traceback" not in log


def test_launcher_reports_a_service_that_cannot_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="(?s)exited with status 1.*the port is already in use"):
            start_pathway_service("127.0.0.1", port, tmp_path / "service.log", timeout=60)


def test_launcher_and_registry_do_not_import_pathway() -> None:
    # The Dagster side imports these; pathway is a 1 s, 300 MB import it must never pay.
    code = (
        "import sys, workflow_platform.stack.pathway_launcher, workflow_platform.pathway_service.pipelines; "
        "assert 'pathway' not in sys.modules, 'pathway was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
