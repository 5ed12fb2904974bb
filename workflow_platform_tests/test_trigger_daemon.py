"""A `trigger` sensor run by the real Dagster daemon (`wfp up`): no committed row is skipped when transactions
commit out of id order, the cursor survives a daemon killed with SIGKILL, and no batch is launched twice. Each
run records the rows of its batch in a `<table>_done` table, so a row skipped or processed twice shows there."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psutil
import psycopg2
import pytest
from dagster._core.scheduler.instigation import InstigatorType, TickStatus

from workflow_platform.cli.runner import environment
from workflow_platform.instance.database import STORAGE_ONLY_YAML, dagster_storage_url
from workflow_platform.orchestration.workflow_run import TRIGGER_TAG
from workflow_platform_tests.conftest import fetch, grant_to_workflows, running_platform

TWO_WRITERS = "public.sensed_two_writers"
RESTART = "public.sensed_restart"
MANY_WRITERS = "public.sensed_many_writers"
SEEDED = "public.sensed_seeded"  # startAfter latest, empty when the daemon first ticks, then bulk-loaded
TABLES = (TWO_WRITERS, RESTART, MANY_WRITERS, SEEDED)
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def recording_workflow(table: str, **trigger: object) -> dict:
    """Records each row of its batch with the run that processed it."""
    name = table.split(".")[1].replace("_", "-")
    return {
        "name": name,
        "trigger": {"table": table, "intervalSeconds": 1, "batchSize": 3, **trigger},
        "steps": [
            {
                "id": "record",
                "plugin": "postgres",
                "action": "query",
                "input": {
                    "sql": f"INSERT INTO {table}_done (id, run_id) SELECT id, :run FROM {table} "
                    "WHERE id > :after AND id <= :through RETURNING id",
                    "params": {
                        "run": "{{ run.id }}",
                        "after": "{{ trigger.after }}",
                        "through": "{{ trigger.through }}",
                    },
                },
            }
        ],
    }


def job_of(table: str) -> str:
    return table.split(".")[1].replace("-", "_")


@pytest.fixture(scope="module")
def platform(stack_env, tmp_path_factory) -> Iterator[dict]:
    """`wfp up` with one recording workflow per test, and the platform's Dagster instance to look at."""
    with contextlib.closing(psycopg2.connect(stack_env["WFP_PG_ADMIN_DSN"])) as connection:
        connection.autocommit = True
        for table in TABLES:
            fetch(connection, f"DROP TABLE IF EXISTS {table}, {table}_done")
            fetch(connection, f"CREATE TABLE {table} (id bigserial PRIMARY KEY, v int)")
            fetch(connection, f"CREATE TABLE {table}_done (id bigint, run_id text)")
            grant_to_workflows(connection, table, "SELECT")
            grant_to_workflows(connection, f"{table}_done", "SELECT, INSERT")
    home = tmp_path_factory.mktemp("trigger_up")
    for table in TABLES:
        workflow = recording_workflow(table, **({"startAfter": "latest"} if table == SEEDED else {}))
        (home / "submitted" / workflow["name"]).mkdir(parents=True)
        (home / "submitted" / workflow["name"] / "workflow.json").write_text(json.dumps(workflow))
    instance_dir = tmp_path_factory.mktemp("trigger_instance")
    (instance_dir / "dagster.yaml").write_text(STORAGE_ONLY_YAML)
    with (
        environment({"DAGSTER_PG_URL": dagster_storage_url(stack_env["WFP_PG_ADMIN_DSN"])}),
        running_platform(home) as running,
        dg.DagsterInstance.from_config(str(instance_dir)) as instance,
    ):
        yield {**running, "instance": instance}


def sensor_ticks(instance: dg.DagsterInstance, table: str) -> list:
    name = f"{job_of(table)}_on_new_rows"
    states = instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    ticks = []
    for state in states:
        if state.instigator_name == name:
            ticks += instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=50)
    return ticks


def wait_for_tick(instance: dg.DagsterInstance, table: str, since: float, timeout: float = 60) -> None:
    """Until the daemon has evaluated the table's sensor at least once, starting after `since`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [
            t for t in sensor_ticks(instance, table) if t.timestamp > since and t.status != TickStatus.STARTED
        ]
        if done:
            return
        time.sleep(0.3)
    raise AssertionError(f"no tick of the sensor on {table} after {since} within {timeout:g} s")


def wait_for_runs(instance: dg.DagsterInstance, table: str, timeout: float = 60) -> None:
    """Until the runs launched so far for the table have ended: a batch launched too early has then read its
    rows, and a row committed afterwards cannot slip into it."""
    deadline = time.monotonic() + timeout
    while any(r.status not in FINISHED for r in sensor_runs(instance, table)):
        assert time.monotonic() < deadline, f"runs on {table} still going after {timeout:g} s"
        time.sleep(0.3)


def open_insert(dsn: str, table: str) -> tuple[psycopg2.extensions.connection, int]:
    """A transaction that has inserted a row and not committed yet."""
    connection = psycopg2.connect(dsn)
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} (v) VALUES (0) RETURNING id")
        (taken,) = cursor.fetchone()
    return connection, taken


def insert(pg, table: str, count: int) -> list[int]:
    return [
        i for (i,) in fetch(pg, f"INSERT INTO {table} (v) SELECT generate_series(1, %s) RETURNING id", count)
    ]


def sensor_runs(instance: dg.DagsterInstance, table: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(job_name=job_of(table))))


def assert_every_row_processed_once(
    pg, instance: dg.DagsterInstance, table: str, timeout: float = 60
) -> None:
    """Every committed row recorded by exactly one run; the runs' keys distinct, their batches disjoint and
    covering every row."""
    rows = [i for (i,) in fetch(pg, f"SELECT id FROM {table} ORDER BY id")]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recorded = fetch(pg, f"SELECT id, count(*) FROM {table}_done GROUP BY id ORDER BY id")
        runs = sensor_runs(instance, table)
        if [i for i, _ in recorded] == rows and all(r.status in FINISHED for r in runs):
            break
        time.sleep(0.5)
    missing = sorted(set(rows) - {i for i, _ in recorded})
    assert missing == [], f"rows of {table} never processed: {missing}"
    assert [n for _, n in recorded] == [1] * len(rows), f"rows processed twice: {recorded}"
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [r.status for r in runs]
    keys = [r.tags["dagster/run_key"] for r in runs]
    assert len(keys) == len(set(keys)), f"a run key launched twice: {sorted(keys)}"
    batches = sorted((b["after"], b["through"]) for b in (json.loads(r.tags[TRIGGER_TAG]) for r in runs))
    for (_, through), (after, _) in zip(batches, batches[1:], strict=False):
        assert after == through, f"batches overlap or leave a gap: {batches}"
    assert batches[0][0] == 0 and batches[-1][1] >= rows[-1], batches
    assert keys and all(key.startswith(f"{table}:") for key in keys)


def test_a_row_committed_after_a_higher_id_is_processed_once(platform, pg, stack_env):
    """Transaction A takes id N, B takes N+1 and commits first; a tick runs; then A commits."""
    instance = platform["instance"]
    writer_a, taken = open_insert(stack_env["WFP_PG_ADMIN_DSN"], TWO_WRITERS)
    try:
        (committed,) = insert(pg, TWO_WRITERS, 1)
        assert committed == taken + 1
        wait_for_tick(instance, TWO_WRITERS, since=time.time())
        wait_for_runs(instance, TWO_WRITERS)
        writer_a.commit()
    finally:
        writer_a.close()
    assert_every_row_processed_once(pg, instance, TWO_WRITERS)


def daemon_process(home: Path) -> psutil.Process:
    """The `wfp daemon` that `wfp up` (WFP_HOME=home) runs; not the run workers it forks, which share its
    command line."""
    workspace = str(home / "workspace.yaml")
    found = {
        p.pid: p
        for p in psutil.process_iter(["cmdline", "ppid"])
        if workspace in (p.info["cmdline"] or []) and "daemon" in p.info["cmdline"]
    }
    daemons = [p for p in found.values() if p.info["ppid"] not in found]
    assert len(daemons) == 1, f"not one Dagster daemon running with {workspace}: {daemons}"
    return daemons[0]


def test_the_cursor_survives_a_daemon_killed_with_sigkill(platform, pg, stack_env):
    instance, home = platform["instance"], platform["home"]
    insert(pg, RESTART, 4)
    assert_every_row_processed_once(pg, instance, RESTART)
    # A row held back by an open transaction when the daemon dies: the waiting is in the stored cursor.
    writer_a, _ = open_insert(stack_env["WFP_PG_ADMIN_DSN"], RESTART)
    try:
        insert(pg, RESTART, 1)
        wait_for_tick(instance, RESTART, since=time.time())
        wait_for_runs(instance, RESTART)
        killed = daemon_process(home)
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wfp up starts a dead Dagster process again within a second
            with contextlib.suppress(AssertionError):
                if daemon_process(home).pid != killed.pid:
                    break
            time.sleep(0.3)
        else:
            raise AssertionError("the daemon was not started again")
        writer_a.commit()
    finally:
        writer_a.close()
    insert(pg, RESTART, 4)
    restarted = time.time()
    assert_every_row_processed_once(pg, instance, RESTART, timeout=120)
    assert any(t.timestamp > restarted for t in sensor_ticks(instance, RESTART))


def test_concurrent_writers_never_get_a_batch_launched_twice_or_a_row_skipped(platform, pg, stack_env):
    """Writers commit and roll back in random order, some taking ids well before they insert, while the
    daemon ticks every second."""
    dsn = stack_env["WFP_PG_ADMIN_DSN"]
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        chance = random.Random(seed)
        try:
            with contextlib.closing(psycopg2.connect(dsn)) as connection:
                for _ in range(6):
                    with connection.cursor() as cursor:
                        if chance.random() < 0.3:  # the id first, the row later
                            cursor.execute(f"SELECT nextval('{MANY_WRITERS}_id_seq')")
                            time.sleep(chance.uniform(0, 1.5))
                            cursor.execute(
                                f"INSERT INTO {MANY_WRITERS} (id, v) VALUES (%s, 0)", cursor.fetchone()
                            )
                        else:
                            cursor.execute(
                                f"INSERT INTO {MANY_WRITERS} (v) SELECT generate_series(1, %s)",
                                (chance.randint(1, 4),),
                            )
                        time.sleep(chance.uniform(0, 1.5))
                    if chance.random() < 0.2:
                        connection.rollback()
                    else:
                        connection.commit()
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert fetch(pg, f"SELECT count(*) FROM {MANY_WRITERS}")[0][0] > 0
    assert_every_row_processed_once(pg, platform["instance"], MANY_WRITERS, timeout=120)


def test_start_after_latest_on_an_empty_table_is_not_flooded_by_the_seed(platform, pg):
    """A fresh stack: the daemon's sensor first meets an empty table, then the demo data is loaded in one
    transaction (as `wfp seed transactions` does). The seed is history: only the rows written after it run."""
    instance = platform["instance"]
    wait_for_tick(instance, SEEDED, since=0)
    assert fetch(pg, f"SELECT count(*) FROM {SEEDED}") == [(0,)]
    seeded = insert(pg, SEEDED, 60)  # 20 batches of 3 if they were taken as new rows
    wait_for_tick(instance, SEEDED, since=time.time())
    wait_for_tick(instance, SEEDED, since=time.time())  # a second look, once the load is settled
    assert sensor_runs(instance, SEEDED) == []
    fresh = insert(pg, SEEDED, 4)
    deadline = time.monotonic() + 60
    while sorted(i for (i,) in fetch(pg, f"SELECT id FROM {SEEDED}_done")) != fresh:
        assert time.monotonic() < deadline, fetch(pg, f"SELECT id FROM {SEEDED}_done")
        time.sleep(0.5)
    wait_for_runs(instance, SEEDED)
    runs = sensor_runs(instance, SEEDED)
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    batches = sorted((b["after"], b["through"]) for b in (json.loads(r.tags[TRIGGER_TAG]) for r in runs))
    assert batches[0][0] == seeded[-1] and batches[-1][1] == fresh[-1], batches
    assert fetch(pg, f"SELECT count(*) FROM {SEEDED}_done") == [(len(fresh),)]
