"""Per-step and per-run overhead of the platform on the persistent PostgreSQL instance, as a warm worker runs it.

A chain of N postgres steps (`SELECT :i`) and a one-step job are executed the way a warm worker executes a run:
the run is created on the instance (as the API does) and executed by Dagster's run-worker body
(`launcher/worker.execute`) with the worker's pooled connections, on the project's dagster.yaml (PostgreSQL
storage, compute logs, filesystem IO manager). The same queries made directly in a loop are the baseline.

    per step  = (median time of the N-step run - median of the 1-step run) / (N - 1) - direct time per query
    per run   = median time of the 1-step run - direct time of one query

    .venv/bin/python bench/step_overhead.py [--steps 50] [--repeat 7]

Prints one JSON object. Starts embedded PostgreSQL and S3 servers unless WFP_PG_DSN is set.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2

ROOT = Path(__file__).parent.parent


def chain(name: str, steps: int) -> dict:
    return {
        "name": name,
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


def direct(dsn: str, queries: int) -> float:
    """The same queries without the platform: one connection, one transaction each."""
    connection = psycopg2.connect(dsn)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for i in range(queries):
            cursor.execute("SELECT %(i)s AS i", {"i": i})
            cursor.fetchall()
            connection.commit()
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


@contextlib.contextmanager
def services() -> Iterator[dict[str, str]]:
    if os.environ.get("WFP_PG_DSN"):
        yield dict(os.environ)
        return
    from workflow_platform.settings import wfp_home
    from workflow_platform.stack import EmbeddedStack

    wfp_home().mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(dir=wfp_home()) as state,
        EmbeddedStack(Path(state), services=("postgres", "s3")) as stack,
    ):
        yield stack.env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    # Under WFP_HOME (./.wfp), like `wfp up`'s instance and stack: the IO manager and compute logs write files
    # for each step, PostgreSQL its WAL for each event.
    from workflow_platform.settings import wfp_home

    with services() as env, tempfile.TemporaryDirectory(dir=wfp_home()) as home:
        os.environ.update(env)
        workflows = Path(home, "workflows")
        for name, steps in (("overhead-chain", args.steps), ("overhead-one", 1)):
            Path(workflows, name).mkdir(parents=True)
            Path(workflows, name, "workflow.json").write_text(json.dumps(chain(name, steps)))
        dagster_home = Path(home, "dagster")
        dagster_home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
        os.environ["WORKFLOWS_DIR"] = str(workflows)
        os.environ["DAGSTER_HOME"] = str(dagster_home)
        # Imported once the environment names the instance and the workflows.
        from workflow_platform.instance.database import dagster_storage_url
        from workflow_platform.settings import admin_dsn

        os.environ["DAGSTER_PG_URL"] = dagster_storage_url(admin_dsn(env))
        result = measure(env["WFP_PG_DSN"], workflows, args.steps, args.repeat)
    print(json.dumps(result))


def measure(dsn: str, workflows: Path, steps: int, repeat: int) -> dict:
    import dagster as dg

    from workflow_platform.api.runs import LocationOrigins, RunSubmitter
    from workflow_platform.instance.launcher.worker import connect, execute, prepare
    from workflow_platform.orchestration.catalog import load_workflows

    with dg.DagsterInstance.get() as instance:  # creates the storage tables, as the daemon does
        pass
    instance = dg.DagsterInstance.get()
    prepare(instance)  # what the zygote does before forking,
    connect(instance)  # and a warm worker after
    specs = load_workflows([workflows]).specs
    origins = LocationOrigins("bench", "127.0.0.1", 0, "workflow_platform.definitions", str(ROOT))
    runs = RunSubmitter(instance, origins)

    def run(job: str) -> float:
        spec, path = specs[job]
        dagster_run = runs.create(spec, path, {}, {})
        started = time.perf_counter()
        execute(instance, dagster_run.run_id)
        elapsed = time.perf_counter() - started
        status = instance.get_run_by_id(dagster_run.run_id).status
        assert status == dg.DagsterRunStatus.SUCCESS, status
        return elapsed

    direct(dsn, steps)
    direct_s = statistics.median(direct(dsn, steps) for _ in range(repeat))
    run("overhead_one"), run("overhead_chain")  # warm-up: imports, first connections, snapshots
    one = [run("overhead_one") for _ in range(repeat)]
    many = [run("overhead_chain") for _ in range(repeat)]
    per_query = direct_s / steps
    per_step = (statistics.median(many) - statistics.median(one)) / (steps - 1) - per_query
    return {
        "steps": steps,
        "repeat": repeat,
        "instance": "PostgreSQL (dagster.yaml), pooled connections as in a warm worker",
        "direct_ms_per_query": round(per_query * 1000, 3),
        "one_step_run_s": {"median": round(statistics.median(one), 4), "min": round(min(one), 4)},
        "chain_run_s": {"median": round(statistics.median(many), 4), "min": round(min(many), 4)},
        "overhead_ms_per_step": round(per_step * 1000, 2),
        "overhead_ms_per_run": round((statistics.median(one) - per_query) * 1000, 1),
        "target_ms_per_step": 10,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


if __name__ == "__main__":
    main()
