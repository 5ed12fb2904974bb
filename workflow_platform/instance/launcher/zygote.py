"""The zygote: a process that imports Dagster and one code location once, then forks a single-use worker per run.

Started by the pool (`pool.py`) as `python -m workflow_platform.instance.launcher.zygote --control-fd N --pointer P`.
Before it forks it imports the code location, the modules steps use and the classes dagster.yaml names, and
builds the workers' Dagster instance (its storage engines initialized, their connections closed again). It
stays single-threaded and holds no connection, thread or channel when it forks: each worker opens its own
connections after the fork (`worker.py`). A few workers are forked ahead of time and wait for an order, so a
run starts without waiting for a fork or a connection. A worker serves one run and exits: nothing one run leaves
in a module or the environment reaches the next.

Messages on the control socket are JSON lines.
  pool -> zygote: {"op": "run", "run_id", "reload"}   hand the run to a worker (reload: a workflow file changed)
                  {"op": "signal", "run_id", "signal"} signal the run's worker (termination)
                  {"op": "retire"}                     stop forking; exit once the busy workers are done
  zygote -> pool: {"op": "ready", "pid"}               the code location is imported
                  {"op": "started", "run_id", "pid", "created"}
                  {"op": "exited", "run_id", "pid", "code"}   code < 0: killed by signal -code
EOF on the control socket (the pool's process is gone) retires the zygote; busy workers finish their runs.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass

import psutil
import yaml
from dagster import DagsterError, DagsterInstance, RepositoryDefinition, op
from dagster import job as dagster_job
from dagster._core.execution.api import create_execution_plan
from dagster._core.snap import create_execution_plan_snapshot_id, snapshot_from_execution_plan

from workflow_platform.instance.launcher.worker import prepare, serve
from workflow_platform.instance.storage import PostgresRunStorage
from workflow_platform.settings import PlatformSettings

# An idle worker that dies at once (the database is down, say) is forked again after this pause, not in a loop.
REFORK_PAUSE_S = 1.0


@dataclass
class Worker:
    pid: int
    pidfd: int
    orders: int  # write end of the pipe the worker reads its order from; -1 once it has one
    run_id: str | None = None


class Zygote:
    def __init__(
        self, control: socket.socket, idle_target: int, code_module: str | None, instance: DagsterInstance
    ) -> None:
        self.control = control
        self.instance = instance
        self.idle_target = idle_target
        self.code_module = code_module
        self.selector = selectors.DefaultSelector()
        self.selector.register(control, selectors.EVENT_READ, None)
        self.idle: deque[Worker] = deque()
        self.busy: dict[str, Worker] = {}
        self.workers: dict[int, Worker] = {}  # by pidfd
        self.accepting = True
        self.pool_alive = True
        self.buffer = b""
        self.refork_after = 0.0

    # -- messages ------------------------------------------------------------------------------------------
    def send(self, message: dict) -> None:
        if not self.pool_alive:
            return
        try:
            self.control.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            self.pool_alive = False

    def read_messages(self) -> list[dict]:
        chunk = self.control.recv(65536)
        if not chunk:
            self.pool_alive = False
            self.selector.unregister(self.control)
            self.retire()
            return []
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def handle(self, message: dict) -> None:
        op = message["op"]
        if op == "run":
            self.start_run(message["run_id"], bool(message.get("reload")))
        elif op == "signal":
            worker = self.busy.get(message["run_id"])
            if worker is not None:
                signal.pidfd_send_signal(worker.pidfd, int(message["signal"]))
        elif op == "retire":
            self.retire()

    # -- workers -------------------------------------------------------------------------------------------
    def fork_worker(self) -> Worker:
        read_end, write_end = os.pipe()
        inherited = [self.control.fileno(), self.selector.fileno(), write_end]
        inherited += [fd for w in self.workers.values() for fd in (w.pidfd, w.orders) if fd >= 0]
        pid = os.fork()
        if pid == 0:  # the worker
            code = 70
            try:
                for fd in inherited:
                    os.close(fd)
                code = serve(read_end, self.code_module, self.instance)
            except BaseException:  # noqa: BLE001 - whatever happens, the worker must not return into the zygote
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(read_end)
        worker = Worker(pid, os.pidfd_open(pid), write_end)
        self.workers[worker.pidfd] = worker
        self.selector.register(worker.pidfd, selectors.EVENT_READ, worker)
        return worker

    def start_run(self, run_id: str, reload: bool) -> None:
        worker = self.idle.popleft() if self.idle else self.fork_worker()
        os.write(worker.orders, json.dumps({"run_id": run_id, "reload": reload}).encode() + b"\n")
        os.close(worker.orders)
        worker.orders = -1
        worker.run_id = run_id
        self.busy[run_id] = worker
        self.send(
            {
                "op": "started",
                "run_id": run_id,
                "pid": worker.pid,
                "created": psutil.Process(worker.pid).create_time(),
            }
        )

    def refill(self) -> None:
        while self.accepting and len(self.idle) < self.idle_target and time.monotonic() >= self.refork_after:
            self.idle.append(self.fork_worker())

    def reap(self, worker: Worker) -> None:
        self.selector.unregister(worker.pidfd)
        del self.workers[worker.pidfd]
        _, status = os.waitpid(worker.pid, 0)
        os.close(worker.pidfd)
        code = os.waitstatus_to_exitcode(status)
        if worker.run_id is not None:
            self.busy.pop(worker.run_id, None)
            self.send({"op": "exited", "run_id": worker.run_id, "pid": worker.pid, "code": code})
            return
        self.idle.remove(worker)
        if worker.orders >= 0:
            os.close(worker.orders)
        if code != 0 and self.accepting:
            self.refork_after = time.monotonic() + REFORK_PAUSE_S

    def retire(self) -> None:
        """No new runs; idle workers read EOF and exit."""
        self.accepting = False
        for worker in self.idle:
            if worker.orders >= 0:
                os.close(worker.orders)
                worker.orders = -1

    # -- loop ----------------------------------------------------------------------------------------------
    def serve(self) -> None:
        self.send({"op": "ready", "pid": os.getpid()})
        while self.accepting or self.workers:
            self.refill()
            short = self.accepting and len(self.idle) < self.idle_target  # waiting out a refork pause
            timeout = max(0.0, self.refork_after - time.monotonic()) if short else None
            for key, _ in self.selector.select(timeout=timeout):
                if key.data is None:
                    for message in self.read_messages():
                        self.handle(message)
                else:
                    self.reap(key.data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--pointer", required=True, help="the code location's serialized Dagster CodePointer")
    parser.add_argument("--idle-workers", type=int, default=2)
    parser.add_argument("--preload", action="append", default=[], help="a module to import before forking")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pool decides when the zygote stops (retire / EOF)
    control = socket.socket(fileno=args.control_fd)
    code_module, repository = import_everything(args.pointer, args.preload)
    instance = instance_for_workers()
    prepare(instance)
    if repository is not None:
        remember_plan_snapshots(instance, repository)
    # Objects that exist now are shared with every worker; keep the collector from touching (copying) them.
    gc.collect()
    gc.freeze()
    Zygote(control, args.idle_workers, code_module, instance).serve()


def instance_for_workers() -> DagsterInstance:
    """The Dagster instance of every worker, built once here (dagster.yaml read and checked, storages made) and
    connected in each worker after the fork. Building it connects to nothing: its PostgreSQL storages skip the
    check for missing tables (the daemon and webserver made them; the run a worker executes is in them)."""
    from dagster._core.instance.ref import InstanceRef
    from dagster._serdes import ConfigurableClassData

    ref = InstanceRef.from_dir(PlatformSettings().require("dagster_home"))
    storages = {}
    for name in ("storage_data", "run_storage_data", "event_storage_data", "schedule_storage_data"):
        data = getattr(ref, name)
        config = yaml.safe_load(data.config_yaml) if data is not None else None
        if isinstance(config, dict) and ("postgres_url" in config or "postgres_db" in config):
            config["should_autocreate_tables"] = False
            storages[name] = ConfigurableClassData(data.module_name, data.class_name, yaml.safe_dump(config))
    return DagsterInstance.from_ref(ref._replace(**storages))


def import_everything(
    serialized_pointer: str, preload: list[str]
) -> tuple[str | None, RepositoryDefinition | None]:
    """Import, before forking, what every worker would otherwise import after it: the classes
    the instance's dagster.yaml names (storage, launcher, compute logs), the modules steps import lazily, and
    the code location, as Dagster imports it. Nothing here connects to anything."""
    from dagster import Definitions
    from dagster._core.code_pointer import CodePointer, ModuleCodePointer
    from dagster._core.definitions.reconstruct import def_from_pointer
    from dagster._core.instance.ref import InstanceRef
    from dagster._serdes import ConfigurableClassData, deserialize_value

    ref = InstanceRef.from_dir(PlatformSettings().require("dagster_home"))
    for value in ref:
        if isinstance(value, ConfigurableClassData):
            importlib.import_module(value.module_name)
    for module in preload:
        importlib.import_module(module)
    pointer = deserialize_value(serialized_pointer, CodePointer)
    # As a run worker loads it (def_from_pointer imports modules of its own on its first call).
    target = def_from_pointer(pointer)
    repository = target.get_repository_def() if isinstance(target, Definitions) else None
    if repository is not None:
        warm_up(repository)
    return (pointer.module if isinstance(pointer, ModuleCodePointer) else None), repository


def remember_plan_snapshots(instance: DagsterInstance, repository: RepositoryDefinition) -> None:
    """Each job's execution plan snapshot for a run of the whole job, as the API and the UI record it with the run,
    kept by the workers' run storage (`instance.storage.PostgresRunStorage`, by its content hash): a worker whose
    run has that plan need not read it back and decode it. Any other plan (a step selection, a job with required
    config) is read from the database as before."""
    storage = instance.run_storage
    if not isinstance(storage, PostgresRunStorage):
        return
    for job in repository.get_all_jobs():
        try:
            snapshot = snapshot_from_execution_plan(create_execution_plan(job), job.get_job_snapshot_id())
        except DagsterError:  # e.g. config without defaults: such runs' plans are read when needed
            continue
        storage.remember_snapshot(create_execution_plan_snapshot_id(snapshot), snapshot)


def warm_up(repository: RepositoryDefinition) -> None:
    """What every run would otherwise compute again in its worker: each job's run config schema (cached on the
    job), and the modules of Dagster's execution path (imported by running one trivial job in memory)."""
    for job in repository.get_all_jobs():
        job.run_config_schema  # noqa: B018 - a cached property: computing it is the point

    @op
    def noop() -> None:
        pass

    @dagster_job
    def warm_up_job() -> None:
        noop()

    warm_up_job.execute_in_process(run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})


if __name__ == "__main__":
    main()
