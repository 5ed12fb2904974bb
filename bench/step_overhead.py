"""Per-step overhead of the platform: a chain of N postgres steps run as a Dagster job (in-process executor)
against the same queries made directly in a loop; with an in-memory Dagster instance, and with the persistent
one `wfp run` uses (every Dagster event written to its storage).

    .venv/bin/python bench/step_overhead.py [--steps 50] [--repeat 3]

Prints one JSON object. Starts embedded PostgreSQL and S3 servers unless WFP_PG_DSN is set.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import dagster as dg
import psycopg2

from workflow_platform.translate import build_job
from workflow_platform.validate import check_document


def chain(steps: int) -> dict:
    return {
        "name": "overhead-chain",
        "steps": [
            {
                "id": f"step-{i}",
                "plugin": "postgres",
                "action": "query",
                "needs": [f"step-{i - 1}"] if i else [],
                "input": {"sql": "SELECT :i AS i", "params": {"i": i}},
            }
            for i in range(steps)
        ],
    }


def direct(dsn: str, steps: int) -> float:
    started = time.perf_counter()
    connection = psycopg2.connect(dsn)
    with connection.cursor() as cursor:
        for i in range(steps):
            cursor.execute("SELECT %(i)s AS i", {"i": i})
            cursor.fetchall()
            connection.commit()
    connection.close()
    return time.perf_counter() - started


def platform(job: dg.JobDefinition, instance: dg.DagsterInstance) -> float:
    started = time.perf_counter()
    result = job.execute_in_process(
        instance=instance, run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    )
    elapsed = time.perf_counter() - started
    assert result.success
    return elapsed


@contextlib.contextmanager
def services():
    """The WFP_* environment of the services (postgres steps also hold the object store, for large results)."""
    if os.environ.get("WFP_PG_DSN"):
        yield dict(os.environ)
        return
    from workflow_platform.stack import EmbeddedStack

    with (
        tempfile.TemporaryDirectory() as state,
        EmbeddedStack(Path(state), services=("postgres", "s3")) as stack,
    ):
        yield stack.env


def measure(
    job: dg.JobDefinition, instance: dg.DagsterInstance, steps: int, repeat: int, direct_s: float
) -> dict:
    platform(job, instance)  # warm-up: imports, storage migrations
    runs = [platform(job, instance) for _ in range(repeat)]
    best = min(runs)
    return {
        "platform_s": {"min": round(best, 3), "median": round(statistics.median(runs), 3)},
        "overhead_ms_per_step": round((best - direct_s) / steps * 1000, 2),
        "steps_per_s": round(steps / best, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    spec, problems = check_document(chain(args.steps))
    assert not problems
    job = build_job(spec)
    with services() as env, tempfile.TemporaryDirectory() as home:
        os.environ.update(env)
        direct(env["WFP_PG_DSN"], args.steps)
        direct_runs = [direct(env["WFP_PG_DSN"], args.steps) for _ in range(args.repeat)]
        best_direct = min(direct_runs)
        Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        with dg.DagsterInstance.ephemeral() as instance:
            in_memory = measure(job, instance, args.steps, args.repeat, best_direct)
        # What `wfp run` uses: a persistent instance (SQLite run and event storage under DAGSTER_HOME).
        with dg.DagsterInstance.from_config(home) as instance:
            persistent = measure(job, instance, args.steps, args.repeat, best_direct)
    print(
        json.dumps(
            {
                "steps": args.steps,
                "executor": "in_process",
                "direct_s": {
                    "min": round(best_direct, 4),
                    "median": round(statistics.median(direct_runs), 4),
                },
                "ephemeral_instance": in_memory,
                "persistent_instance": persistent,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "target_ms_per_step": 25,
            }
        )
    )


if __name__ == "__main__":
    main()
