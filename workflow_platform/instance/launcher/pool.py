"""The warm worker pool, kept by the process that launches runs (the Dagster daemon): one zygote per code location.

The pool hands a run to its location's zygote (`zygote.py`), which gives it to a pre-forked worker and reports the
worker's pid; when the worker exits the zygote reports its exit code. A worker that died before its run finished
(killed, out of memory) fails the run at once, so run retries can take over: no run is left STARTED.
A run the UI or API cancels (status CANCELING) gets SIGINT, which Dagster turns into a clean interruption,
then SIGKILL if it has not stopped after `cancel_grace_s`.

Recycling: a zygote is replaced after `recycle_after_runs` runs, above `max_zygote_rss_mb`, and when the code
it imported changes. If only workflow files changed, runs keep going to the old zygote with `reload` (its worker
rebuilds the code location, tens of milliseconds) until the replacement is ready; if the platform's Python source
changed, runs wait for the replacement. A replaced zygote stops forking and exits once its busy workers are done.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import psutil
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.code_pointer import CodePointer
from dagster._serdes import serialize_value

from workflow_platform.orchestration.catalog import fingerprint, workflows_fingerprint

log = logging.getLogger("workflow_platform.instance.launcher")

PACKAGE_DIR = Path(__file__).resolve().parents[2]
EXITS_REMEMBERED = 1000


SOURCES_CHECK_INTERVAL_S = 1.0
_sources: tuple[float, str] = (0.0, "")


def sources_fingerprint() -> str:
    """The platform's own Python source: a change means the imported code is stale. Looked at most once a
    second (walking the package takes a millisecond)."""
    global _sources
    checked, value = _sources
    if time.monotonic() - checked > SOURCES_CHECK_INTERVAL_S:
        _sources = (time.monotonic(), value := fingerprint(sorted(PACKAGE_DIR.rglob("*.py"))))
    return value


@dataclass(frozen=True)
class PoolSettings:
    idle_workers: int = 2
    preload_modules: tuple[str, ...] = ()
    recycle_after_runs: int = 1000
    max_zygote_rss_mb: int = 2048
    start_timeout_s: float = 180.0  # a cold zygote imports the code location before its first run
    cancel_grace_s: float = 10.0
    shutdown_grace_s: float = 5.0


@dataclass
class RunWorker:
    run_id: str
    zygote: ZygoteProcess
    pid: int | None = None  # None until the zygote reports the worker
    created: float | None = None
    interrupted_at: float | None = None

    @property
    def orphaned(self) -> bool:
        """Its zygote died: nobody reports its exit; the pool watches the process itself."""
        return self.zygote.gone and self.pid is not None

    def alive(self) -> bool:
        try:
            return psutil.Process(self.pid).create_time() == self.created
        except psutil.Error:
            return False

    def signal(self, signum: int) -> None:
        if not self.orphaned:
            self.zygote.signal(self.run_id, signum)
        elif self.alive():  # the same process, not a new one under a reused pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)


class ZygoteProcess:
    """One zygote and its control socket; a thread reads the zygote's messages."""

    def __init__(self, pool: WorkerPool, pointer: CodePointer, executable: str, workflows: str, sources: str):
        self.pool = pool
        self.workflows = workflows  # fingerprints taken before the zygote imports anything
        self.sources = sources
        self.runs_started = 0
        self.ready = threading.Event()
        self.gone = False
        self._waiting: dict[str, Future[dict]] = {}
        self._send_lock = threading.Lock()
        self._socket, child = socket.socketpair()
        command = [
            executable,
            "-m",
            "workflow_platform.instance.launcher.zygote",
            "--control-fd",
            str(child.fileno()),
        ]
        command += ["--pointer", serialize_value(pointer), "--idle-workers", str(pool.settings.idle_workers)]
        for module in pool.settings.preload_modules:
            command += ["--preload", module]
        # Its own session: a signal to the daemon's process group (wfp up stopping it) must not kill the workers;
        # the pool stops them in order.
        self.process = subprocess.Popen(command, pass_fds=[child.fileno()], start_new_session=True)
        child.close()
        threading.Thread(target=self._read, name=f"wfp-zygote-{self.process.pid}", daemon=True).start()

    def _send(self, message: dict) -> None:
        with self._send_lock:
            self._socket.sendall(json.dumps(message).encode() + b"\n")

    def start_run(self, run_id: str, reload: bool, timeout: float) -> dict:
        future: Future[dict] = Future()
        self._waiting[run_id] = future
        self.runs_started += 1
        self._send({"op": "run", "run_id": run_id, "reload": reload})
        try:
            return future.result(timeout)
        finally:
            self._waiting.pop(run_id, None)

    def signal(self, run_id: str, signum: int) -> None:
        if not self.gone:
            self._send({"op": "signal", "run_id": run_id, "signal": int(signum)})

    def retire(self) -> None:
        if not self.gone:
            with contextlib.suppress(OSError):
                self._send({"op": "retire"})

    def rss_mb(self) -> float:
        try:
            return psutil.Process(self.process.pid).memory_info().rss / 2**20
        except psutil.Error:
            return 0.0

    def _read(self) -> None:
        with self._socket.makefile("rb") as messages:
            for line in messages:
                message = json.loads(line)
                op = message["op"]
                if op == "ready":
                    self.ready.set()
                elif op == "started":
                    self.pool._started(self, message)
                    if future := self._waiting.get(message["run_id"]):
                        future.set_result(message)
                elif op == "exited":
                    self.pool._exited(message["run_id"], message["pid"], message["code"])
        self.gone = True
        code = self.process.wait()
        for run_id, future in list(self._waiting.items()):
            future.set_exception(
                RuntimeError(
                    f"the warm zygote (pid {self.process.pid}) exited with code {code} before starting run "
                    f"{run_id}; the daemon's log says why (the code location may not import)"
                )
            )

    def close(self, timeout: float = 10.0) -> None:
        """EOF to the zygote; it exits once its workers are done."""
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_WR)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class WorkerPool:
    def __init__(
        self,
        instance: DagsterInstance,
        settings: PoolSettings,
        on_run_finished: Callable[[], None] = lambda: None,
    ) -> None:
        self.instance = instance
        self.settings = settings
        self.on_run_finished = on_run_finished
        self._lock = threading.RLock()
        self._zygotes: dict[tuple[str, CodePointer], ZygoteProcess] = {}
        self._replacements: dict[tuple[str, CodePointer], ZygoteProcess] = {}
        self._retired: list[ZygoteProcess] = []
        self._active: dict[str, RunWorker] = {}
        self._exits: OrderedDict[str, int] = OrderedDict()
        self._stopping = threading.Event()
        self._housekeeper = threading.Thread(target=self._housekeeping, name="wfp-pool", daemon=True)
        self._housekeeper.start()

    # -- launching -----------------------------------------------------------------------------------------
    def prewarm(self, pointer: CodePointer, executable: str | None = None) -> None:
        with self._lock:
            self._zygote_for(
                (executable or sys.executable, pointer), workflows_fingerprint(), sources_fingerprint()
            )

    def launch(self, run_id: str, pointer: CodePointer, executable: str | None = None) -> RunWorker:
        if self._stopping.is_set():
            raise RuntimeError("the warm worker pool is shutting down")
        workflows, sources = workflows_fingerprint(), sources_fingerprint()
        with self._lock:
            zygote = self._zygote_for((executable or sys.executable, pointer), workflows, sources)
            worker = self._active[run_id] = RunWorker(run_id, zygote)
        try:
            zygote.start_run(
                run_id, reload=zygote.workflows != workflows, timeout=self.settings.start_timeout_s
            )
        except BaseException:
            with self._lock:
                self._active.pop(run_id, None)
            raise
        return worker

    def _zygote_for(self, key: tuple[str, CodePointer], workflows: str, sources: str) -> ZygoteProcess:
        current = self._zygotes.get(key)
        replacement = self._replacements.get(key)
        if replacement is not None and (replacement.gone or replacement.sources != sources):
            self._retire(self._replacements.pop(key))
            replacement = None
        if current is not None and (current.gone or current.sources != sources):
            # Stale Python code cannot be reloaded in a worker: this run waits for a zygote that imports it anew.
            self._retire(self._zygotes.pop(key))
            current = None
        if current is None:
            current = self._zygotes[key] = self._replacements.pop(key, None) or self._spawn(
                key, workflows, sources
            )
            return current
        if replacement is not None and replacement.ready.is_set():
            self._retire(current)
            current = self._zygotes[key] = self._replacements.pop(key)
        elif replacement is None and self._needs_recycling(current, workflows):
            self._replacements[key] = self._spawn(key, workflows, sources)
        return current

    def _needs_recycling(self, zygote: ZygoteProcess, workflows: str) -> bool:
        return (
            zygote.workflows != workflows
            or zygote.runs_started >= self.settings.recycle_after_runs
            or zygote.rss_mb() > self.settings.max_zygote_rss_mb
        )

    def _spawn(self, key: tuple[str, CodePointer], workflows: str, sources: str) -> ZygoteProcess:
        executable, pointer = key
        zygote = ZygoteProcess(self, pointer, executable, workflows, sources)
        log.info("warm zygote pid %s started for %s", zygote.process.pid, pointer.describe())
        return zygote

    def _retire(self, zygote: ZygoteProcess) -> None:
        log.info("warm zygote pid %s retired after %s runs", zygote.process.pid, zygote.runs_started)
        zygote.retire()
        self._retired.append(zygote)

    # -- what the zygotes report ---------------------------------------------------------------------------
    def _started(self, zygote: ZygoteProcess, message: dict) -> None:
        with self._lock:
            worker = self._active.get(message["run_id"])
            if worker is not None:
                worker.pid, worker.created = message["pid"], message["created"]

    def _exited(self, run_id: str, pid: int, code: int | None) -> None:
        with self._lock:
            worker = self._active.pop(run_id, None)
            self._exits[run_id] = code
            while len(self._exits) > EXITS_REMEMBERED:
                self._exits.popitem(last=False)
        try:
            self._settle(run_id, pid, code, canceled=worker is not None and worker.interrupted_at is not None)
        except Exception:  # the storage may be down: run monitoring will find the worker gone
            log.exception("could not record the end of run %s's worker", run_id)
        self.on_run_finished()

    def _settle(self, run_id: str, pid: int, code: int | None, canceled: bool) -> None:
        """A run whose worker is gone but which is not finished is failed (or canceled, if it was being)."""
        run = self.instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return
        if code is None:
            how = "is gone (its zygote died first, so its exit code is unknown)"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        if canceled or run.status == DagsterRunStatus.CANCELING:
            self.instance.report_run_canceled(run, message=f"Run worker (pid {pid}) {how} while canceling.")
        else:
            self.instance.report_run_failed(
                run, message=f"Run worker (pid {pid}) {how} before the run finished."
            )

    # -- health, termination -------------------------------------------------------------------------------
    def worker_state(self, run_id: str) -> tuple[str, int | None] | None:
        """("running", pid), ("exited", code), or None if this pool never had the run."""
        with self._lock:
            if run_id in self._active:
                return "running", self._active[run_id].pid
            if run_id in self._exits:
                return "exited", self._exits[run_id]
        return None

    def _interrupt_canceling(self) -> None:
        with self._lock:
            active = dict(self._active)
        if not active:
            return
        canceling = self.instance.get_runs(
            RunsFilter(run_ids=list(active), statuses=[DagsterRunStatus.CANCELING])
        )
        now = time.monotonic()
        for run in canceling:
            worker = active[run.run_id]
            if worker.interrupted_at is None:
                worker.interrupted_at = now
                worker.signal(signal.SIGINT)
            elif now - worker.interrupted_at > self.settings.cancel_grace_s:
                worker.signal(signal.SIGKILL)

    def _watch_orphans(self) -> None:
        with self._lock:
            gone = [w for w in self._active.values() if w.orphaned and not w.alive()]
        for worker in gone:
            self._exited(worker.run_id, worker.pid, None)

    def _housekeeping(self) -> None:
        while not self._stopping.wait(1.0):
            try:
                self._interrupt_canceling()
                self._watch_orphans()
                with self._lock:
                    for key, replacement in list(self._replacements.items()):
                        if replacement.ready.is_set():
                            self._zygote_for(key, replacement.workflows, replacement.sources)
                    self._retired = [z for z in self._retired if z.process.poll() is None]
            except Exception:  # keep watching; the next tick tries again
                log.exception("warm pool housekeeping failed")

    # -- shutdown ------------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Let running runs finish for a moment, then interrupt them (they end FAILURE and run retries take them
        up after a restart), then stop the zygotes."""
        self._stopping.set()
        self._wait_idle(self.settings.shutdown_grace_s)
        for signum in (signal.SIGINT, signal.SIGKILL):
            with self._lock:
                active = list(self._active.values())
            for worker in active:
                worker.signal(signum)
            self._wait_idle(self.settings.cancel_grace_s)
        with self._lock:
            zygotes = [*self._zygotes.values(), *self._replacements.values(), *self._retired]
            self._zygotes.clear()
            self._replacements.clear()
            self._retired = []
        for zygote in zygotes:
            zygote.close()

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._active and time.monotonic() < deadline:
            time.sleep(0.05)
