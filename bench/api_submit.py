"""Submit-to-success latency through the HTTP API (`wfp up`): a 3-step workflow, sequential runs (p50/p95),
then runs completed per minute with several concurrent submitters.

    .venv/bin/python bench/api_submit.py [--runs 20] [--concurrency 8] [--concurrent-runs 24]
                                         [--concurrent-poll-seconds 1.0]

Starts `wfp up` (embedded stack, Dagster webserver + daemon, API) on free ports unless WFP_API_URL is set.
Prints one JSON object. Sequential runs are polled every 0.1 s (latency); concurrent submitters every
--concurrent-poll-seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from workflow_platform.up import free_port, start_platform_process

ROOT = Path(__file__).parent.parent
WORKFLOW = {
    "name": "bench-api-submit",
    "steps": [
        {
            "id": "compute",
            "plugin": "pathway",
            "action": "runPipeline",
            "input": {"pipelineId": "sample-pipeline", "input": {"count": 100}},
        },
        {
            "id": "store",
            "plugin": "minio",
            "action": "putObject",
            "needs": ["compute"],
            "input": {"key": "bench/{{ run.id }}.json", "data": "{{ steps.compute.result }}"},
        },
        {
            "id": "log",
            "plugin": "postgres",
            "action": "insert",
            "needs": ["store"],
            "input": {
                "table": "orchestrator.events",
                "data": {"event_type": "bench", "data": {"run": "{{ run.id }}"}},
            },
        },
    ],
}


@contextlib.contextmanager
def platform() -> Iterator[str]:
    if os.environ.get("WFP_API_URL"):
        yield os.environ["WFP_API_URL"].rstrip("/")
        return
    with tempfile.TemporaryDirectory() as home:
        port = free_port("127.0.0.1")
        env = {k: v for k, v in os.environ.items() if not k.startswith("WFP_") and k != "DAGSTER_HOME"}
        process = start_platform_process(Path(home), port, free_port("127.0.0.1"), env)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)


def submit_and_wait(api: str, body: dict, poll_seconds: float = 0.1) -> tuple[float, str, str]:
    started = time.perf_counter()
    response = requests.post(f"{api}/api/workflows/{WORKFLOW['name']}/run", json=body, timeout=60)
    response.raise_for_status()
    execution_id = response.json()["executionId"]
    while True:
        status = requests.get(f"{api}/api/executions/{execution_id}", timeout=60).json()["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return time.perf_counter() - started, status, execution_id
        time.sleep(poll_seconds)


def failure_reasons(api: str, runs: list[tuple[float, str, str]], limit: int = 5) -> list[dict]:
    """Why runs did not succeed: failed steps' errors, else the run's last events (as the API reports them)."""
    reasons = []
    for _, status, execution_id in runs:
        if status == "SUCCESS" or len(reasons) >= limit:
            continue
        execution = requests.get(f"{api}/api/executions/{execution_id}", timeout=60).json()
        errors = [f"{step}: {s['error']}" for step, s in execution["steps"].items() if s.get("error")]
        events = [f"{e['type']}: {e['message']}" for e in execution["events"] if e["message"]][-3:]
        reasons.append({"executionId": execution_id, "status": status, "reasons": errors or events})
    return reasons


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--concurrent-runs", type=int, default=24)
    # Each poll reads the run and its events from Dagster's storage (~20 ms of the API's CPU): eight clients
    # polling ten times a second would take a core of a 2-core machine from the runs they wait for.
    parser.add_argument("--concurrent-poll-seconds", type=float, default=1.0)
    args = parser.parse_args()
    with platform() as api:
        registered = requests.post(f"{api}/api/workflows", json=WORKFLOW, timeout=120)
        registered.raise_for_status()
        first = submit_and_wait(api, {})  # the registration's own run warms the run workers' imports
        sequential = [submit_and_wait(api, {}) for _ in range(args.runs)]
        latencies = [seconds for seconds, status, _ in sequential if status == "SUCCESS"]
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            concurrent = list(
                pool.map(
                    lambda _: submit_and_wait(api, {}, args.concurrent_poll_seconds),
                    range(args.concurrent_runs),
                )
            )
        elapsed = time.perf_counter() - started
        failures = failure_reasons(api, [*sequential, *concurrent])
    succeeded = sum(status == "SUCCESS" for _, status, _ in concurrent)
    print(
        json.dumps(
            {
                "workflow_steps": len(WORKFLOW["steps"]),
                "warmup_s": round(first[0], 2),
                "sequential": {
                    "runs": args.runs,
                    "succeeded": len(latencies),
                    "p50_s": round(statistics.median(latencies), 2),
                    "p95_s": round(percentile(latencies, 0.95), 2),
                    "mean_s": round(statistics.mean(latencies), 2),
                },
                "concurrent": {
                    "submitters": args.concurrency,
                    "poll_seconds": args.concurrent_poll_seconds,
                    "runs": args.concurrent_runs,
                    "succeeded": succeeded,
                    "elapsed_s": round(elapsed, 1),
                    "runs_per_minute": round(succeeded / elapsed * 60, 1),
                },
                "failures": failures,
            }
        )
    )


if __name__ == "__main__":
    main()
