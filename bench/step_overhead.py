"""Per-step overhead of the platform: a chain of N postgres steps run as a Dagster job (in-process executor,
persistent instance, as `wfp run` does) against the same queries made directly in a loop.

    .venv/bin/python bench/step_overhead.py [--steps 50] [--repeat 3]

Prints one JSON object. Starts an embedded PostgreSQL unless WFP_PG_DSN is set.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
import tracemalloc
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
def postgres_dsn():
    if os.environ.get("WFP_PG_DSN"):
        yield os.environ["WFP_PG_DSN"]
        return
    from workflow_platform.stack import EmbeddedStack

    with tempfile.TemporaryDirectory() as state, EmbeddedStack(Path(state), services=("postgres",)) as stack:
        yield stack.env["WFP_PG_DSN"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    spec, problems = check_document(chain(args.steps))
    assert not problems
    job = build_job(spec)
    with postgres_dsn() as dsn, tempfile.TemporaryDirectory() as home:
        os.environ["WFP_PG_DSN"] = dsn
        Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        with dg.DagsterInstance.from_config(home) as instance:
            platform(job, instance)  # warm-up: imports, instance storage migrations
            direct(dsn, args.steps)
            tracemalloc.start()
            platform_s = [platform(job, instance) for _ in range(args.repeat)]
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            direct_s = [direct(dsn, args.steps) for _ in range(args.repeat)]
    best_platform, best_direct = min(platform_s), min(direct_s)
    print(
        json.dumps(
            {
                "steps": args.steps,
                "executor": "in_process",
                "platform_s": {
                    "min": round(best_platform, 3),
                    "median": round(statistics.median(platform_s), 3),
                },
                "direct_s": {"min": round(best_direct, 4), "median": round(statistics.median(direct_s), 4)},
                "overhead_ms_per_step": round((best_platform - best_direct) / args.steps * 1000, 2),
                "platform_steps_per_s": round(args.steps / best_platform, 1),
                "platform_peak_python_mb": round(peak / 1e6, 1),
                "target_ms_per_step": 25,
            }
        )
    )


if __name__ == "__main__":
    main()
