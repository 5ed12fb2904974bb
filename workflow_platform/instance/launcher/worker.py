"""A warm worker: a process forked from the zygote that executes one run, then exits.

After the fork it opens its own connections for the instance the zygote built (no connection crosses the fork),
pooled instead of a new database connection per event, and waits for its run. The run goes through
Dagster's own run-worker body (the one `dagster api execute_run` and the code server's run subprocess use), so
events, the UI, step retries, cancellation and re-execution behave as with Dagster's default launcher.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys

import psutil
from dagster import DagsterInstance
from dagster._cli.api import _execute_run_command_body
from dagster._utils.interrupts import capture_interrupts
from sqlalchemy.exc import DBAPIError

from workflow_platform.instance.database import pool_storage_connections, storage_engines
from workflow_platform.instance.storage import learn_schema

WORKER_TAG = "wfp/run-worker"


def worker_tag() -> str:
    """Where this worker runs: the launcher's health check finds the process by it (after a daemon restart too)."""
    created = psutil.Process().create_time()
    return json.dumps(
        {"host": socket.gethostname(), "pid": os.getpid(), "created": created, "zygote": os.getppid()}
    )


def prepare(instance: DagsterInstance) -> None:
    """In the zygote, before forking: the storages' pooled engines (one thread writes a run's events: a pool of
    one), initialized once for every worker (SQLAlchemy asks the server for its version and settings on an
    engine's first connection), and the storages' questions about the schema answered once
    (`instance.storage.learn_schema`); then the connections closed again, so none crosses the fork. A connection
    idle for a while (a long step) is pinged before use, so a database restart during the run does not fail it."""
    pool_storage_connections(instance, size=1, name="wfp-run-worker")
    learn_schema(instance)
    for engine in storage_engines(instance):
        engine.dispose()


def connect(instance: DagsterInstance) -> None:
    """In the worker: a connection pool of this process's own (SQLAlchemy's way after a fork), its connection
    opened now rather than on the run's clock."""
    for engine in storage_engines(instance):
        engine.dispose(close=False)
    _check_out(instance)


def _check_out(instance: DagsterInstance) -> None:
    """A connection of each storage engine checked out and back: opened if the pool has none."""
    for engine in storage_engines(instance):
        with engine.connect():
            pass


def _check_connections(instance: DagsterInstance) -> None:
    """The database may have restarted while the worker waited for its run: one ping per engine (a fraction of a
    millisecond), and a connection the server dropped is replaced before the run's first event needs it."""
    for engine in storage_engines(instance):
        with engine.connect() as connection:
            try:
                connection.exec_driver_sql("SELECT 1")
            except DBAPIError as error:
                if not error.connection_invalidated:
                    raise
                # SQLAlchemy has discarded the dead connection (and the pool's others): the next one is new.


def execute(instance: DagsterInstance, run_id: str) -> int:
    # Dagster's own run-worker body: loads the job from the run's code origin, reports the worker's pid,
    # executes and records every event; a SIGINT (termination) is turned into a clean interruption.
    with capture_interrupts():
        return _execute_run_command_body(
            run_id, instance, write_stream_fn=lambda event: None, set_exit_code_on_failure=False
        )


def serve(assignments: int, code_module: str | None, instance: DagsterInstance) -> int:
    """The worker's life: connections for its instance, then one order from the zygote (`{"run_id", "reload"}`),
    then the run. EOF instead of an order (the zygote retires the worker) ends it."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    connect(instance)
    with os.fdopen(assignments, "rb") as orders:
        line = orders.readline()
    if not line:
        instance.dispose()
        return 0
    order = json.loads(line)
    if order.get("reload") and code_module in sys.modules:
        # A workflow file changed since the zygote imported the code location: build it again here (tens of
        # milliseconds) rather than run stale definitions; the pool replaces the zygote meanwhile.
        importlib.reload(sys.modules[code_module])
    _check_connections(instance)
    # Tagged here, before the run starts, rather than by the launcher: Dagster stores a run's tags and status by
    # rewriting its record, so the launcher's write raced this worker's first status change and could be lost.
    instance.add_run_tags(order["run_id"], {WORKER_TAG: worker_tag()})
    try:
        return execute(instance, order["run_id"])
    finally:
        instance.dispose()
