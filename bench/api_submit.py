"""Submit-to-success through the HTTP API of `wfp up`, as the original orchestrator's clients use it: every
submission is `POST /api/workflows` with the workflow document (a 3-step minio-store-style workflow: Pathway
sample pipeline -> object store -> orchestrator.events), then the client waits for the execution to end.

For each launcher (the warm launcher, then Dagster's default launcher as the baseline, in the same run):
- sequential: one client, p50/p95 of submit -> SUCCESS;
- concurrent: 8 submitters for a number of runs: runs per minute, p50/p95, runs that did not succeed;
- the original client's view: afterwards, while 8 submitters run again, a further client submits an
  original-format workflow new to the platform (then again every 2 s) with the 10 s timeout of the original's
  run-sample.js, and records how long the execution id took.

    .venv/bin/python bench/api_submit.py [--runs 30] [--concurrent-runs 240] [--concurrency 8]
                                         [--launchers warm,default] [--default-runs 10]
                                         [--default-concurrent-runs 24] [--poll-seconds 0]
                                         [--concurrent-poll-seconds 0]

Clients wait for an execution's end with `GET /api/executions/{id}?wait=30`; with --poll-seconds they poll it
instead, as the original's clients do.

Starts `wfp up` (embedded stack, Dagster webserver + daemon, API) on free ports for each launcher, unless
WFP_API_URL is set (then only that platform is measured). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from workflow_platform.cli.up import start_platform_process
from workflow_platform.settings import wfp_home
from workflow_platform.stack.processes import free_ports

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
# The original system's file format, nothing of the extensions: what its run-sample.js posts.
ORIGINAL_FORMAT = {
    "name": "bench-original-client",
    "description": "the original orchestrator's minio-store sample, as its clients submit it",
    "steps": [
        {
            "id": "run-pathway",
            "plugin": "pathway",
            "action": "runPipeline",
            "input": {"pipelineId": "sample-pipeline", "input": {"source": "local", "count": 150}},
        },
        {
            "id": "store-results",
            "plugin": "minio",
            "action": "putObject",
            "needs": ["run-pathway"],
            "input": {
                "key": "outputs/bench-original-client/result.json",
                "data": "{{ steps.run-pathway.result }}",
            },
        },
    ],
}
ORIGINAL_CLIENT_TIMEOUT_S = 10  # run-sample.js: axios with a 10 s timeout
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


@contextlib.contextmanager
def platform_up(launcher: str) -> Iterator[str]:
    if os.environ.get("WFP_API_URL"):
        yield os.environ["WFP_API_URL"].rstrip("/")
        return
    wfp_home().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wfp_home()) as home:
        port, dagster_port = free_ports(2)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WFP_") and k != "DAGSTER_HOME"}
        process = start_platform_process(Path(home), port, dagster_port, env, launcher=launcher)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)


_sessions = threading.local()


def session() -> requests.Session:
    """Each client keeps its HTTP connection open between requests, as axios and browsers do."""
    if not hasattr(_sessions, "session"):
        _sessions.session = requests.Session()
    return _sessions.session


def submit_and_wait(api: str, poll_seconds: float) -> tuple[float, str]:
    """(seconds from the POST to the end, final status); 'ERROR <code>' if the submission failed. The client
    waits with `GET /api/executions/{id}?wait=30` (answered when the run ends), or polls every `poll_seconds`."""
    started = time.perf_counter()
    try:
        response = session().post(f"{api}/api/workflows", json=WORKFLOW, timeout=60)
    except requests.RequestException as error:
        return time.perf_counter() - started, f"ERROR {type(error).__name__}"
    if response.status_code != 201:
        return time.perf_counter() - started, f"ERROR {response.status_code}"
    execution = f"{api}/api/executions/{response.json()['executionId']}"
    params = {} if poll_seconds else {"wait": 30}
    while True:
        status = session().get(execution, params=params, timeout=60).json()["status"]
        if status in FINISHED:
            return time.perf_counter() - started, status
        time.sleep(poll_seconds)


def original_client(api: str, stop: threading.Event, results: list[dict]) -> None:
    """Submits every 2 s while the concurrent phase lasts, as run-sample.js would, timing the execution id."""
    while not stop.wait(2.0):
        started = time.perf_counter()
        try:
            response = requests.post(
                f"{api}/api/workflows", json=ORIGINAL_FORMAT, timeout=ORIGINAL_CLIENT_TIMEOUT_S
            )
            outcome = "executionId" if response.status_code == 201 else f"HTTP {response.status_code}"
        except requests.Timeout:
            outcome = "timeout"
        results.append({"seconds": round(time.perf_counter() - started, 3), "outcome": outcome})


def client(poll_seconds: float) -> str:
    return f"polls every {poll_seconds:g} s" if poll_seconds else "waits for the end (GET ...?wait=30)"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def summary(results: list[tuple[float, str]]) -> dict:
    latencies = [seconds for seconds, status in results if status == "SUCCESS"]
    failed = [status for _, status in results if status != "SUCCESS"]
    return {
        "runs": len(results),
        "succeeded": len(latencies),
        "failed": len(failed),
        "failed_statuses": sorted(set(failed)),
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p95_s": round(percentile(latencies, 0.95), 3) if latencies else None,
        "mean_s": round(statistics.mean(latencies), 3) if latencies else None,
    }


def concurrently(api: str, runs: int, args: argparse.Namespace) -> tuple[list[tuple[float, str]], float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        results = list(pool.map(lambda _: submit_and_wait(api, args.concurrent_poll_seconds), range(runs)))
    return results, time.perf_counter() - started


def measure(launcher: str, runs: int, concurrent_runs: int, args: argparse.Namespace) -> dict:
    with platform_up(launcher) as api:
        warmup = [submit_and_wait(api, args.poll_seconds) for _ in range(2)]  # imports, first connections
        time.sleep(10)  # the code location reload for the new workflow (in the background) ends
        sequential = [submit_and_wait(api, args.poll_seconds) for _ in range(runs)]
        load_before = os.getloadavg()
        concurrent, elapsed = concurrently(api, concurrent_runs, args)
        load_after = os.getloadavg()
        # The original client submits a workflow new to the platform while the submitters keep going.
        stop, probes = threading.Event(), []
        prober = threading.Thread(target=original_client, args=(api, stop, probes))
        prober.start()
        concurrently(api, max(concurrent_runs // 4, args.concurrency), args)
        stop.set()
        prober.join()
    succeeded = sum(status == "SUCCESS" for _, status in concurrent)
    return {
        "warmup_s": [round(seconds, 2) for seconds, _ in warmup],
        "sequential": {**summary(sequential), "client": client(args.poll_seconds)},
        "concurrent": {
            **summary(concurrent),
            "submitters": args.concurrency,
            "client": client(args.concurrent_poll_seconds),
            "elapsed_s": round(elapsed, 1),
            "runs_per_minute": round(succeeded / elapsed * 60, 1),
            "load_average_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        },
        "original_client": {
            "timeout_s": ORIGINAL_CLIENT_TIMEOUT_S,
            "while": f"{args.concurrency} submitters run; its first submission is a workflow new to the platform",
            "submissions": len(probes),
            "got_execution_id": sum(p["outcome"] == "executionId" for p in probes),
            "first_s": probes[0]["seconds"] if probes else None,
            "max_s": max((p["seconds"] for p in probes), default=None),
            "p50_s": round(statistics.median([p["seconds"] for p in probes]), 3) if probes else None,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--concurrent-runs", type=int, default=240)
    parser.add_argument("--launchers", default="warm,default")
    # Dagster's default launcher starts a Python process per run: fewer runs keep the baseline under minutes.
    parser.add_argument("--default-runs", type=int, default=10)
    parser.add_argument("--default-concurrent-runs", type=int, default=24)
    # 0: the client waits for the end with ?wait= (no polling); else it polls at this interval, as older clients do.
    parser.add_argument("--poll-seconds", type=float, default=0.0)
    parser.add_argument("--concurrent-poll-seconds", type=float, default=0.0)
    args = parser.parse_args()
    result: dict = {
        "workflow_steps": len(WORKFLOW["steps"]),
        "submission": "POST /api/workflows with the workflow document",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    for launcher in args.launchers.split(","):
        warm = launcher == "warm"
        runs = args.runs if warm else args.default_runs
        concurrent_runs = args.concurrent_runs if warm else args.default_concurrent_runs
        result[launcher] = measure(launcher, runs, concurrent_runs, args)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
