"""EmbeddedStack: the platform's services as real local servers, detached so they outlive the CLI."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from workflow_platform.files import write_atomically
from workflow_platform.stack import fraud_stream_server, nats_server, pathway_server, pg_server, s3_server
from workflow_platform.stack.processes import (
    ServiceHandle,
    ServiceStartError,
    StackError,
    data_dir_users,
    rotate_log,
    stop_process,
)

SERVICES: tuple[str, ...] = ("postgres", "nats", "s3", "pathway", "fraud-stream")
MANIFEST = "stack.json"

# A starter takes the state dir, the log path and the ports the service had before (a restart keeps its
# endpoints when they are still free, so whoever holds the stack's WFP_* variables can go on using them).
Starter = Callable[[Path, Path, Mapping[str, int] | None], ServiceHandle]
_STARTERS: dict[str, Starter] = {
    "postgres": pg_server.start,
    "nats": nats_server.start,
    "s3": s3_server.start,
}
# Started once the services they need run, with those services' WFP_* variables in their environment: the
# Pathway service reads pipeline inputs by reference from S3; the fraud stream's supervisor reads NATS and
# the object store, its pipeline writes scores to PostgreSQL.
_STARTERS_AFTER: dict[
    str,
    tuple[
        tuple[str, ...], Callable[[Path, Path, Mapping[str, str], Mapping[str, int] | None], ServiceHandle]
    ],
] = {
    "pathway": (("s3",), pathway_server.start),
    "fraud-stream": (("postgres", "nats", "s3"), fraud_stream_server.start),
}
# Services without an entry are stopped by signalling their process group.
_STOPPERS: dict[str, Callable[[ServiceHandle], None]] = {"postgres": pg_server.stop, "s3": s3_server.stop}
# Where each server keeps its data, under the state dir: never two servers on one of these.
_DATA_DIRS: dict[str, str] = {
    "postgres": "postgres",
    "nats": "nats",
    "s3": "s3",
    "fraud-stream": fraud_stream_server.DATA_DIR,  # its checkpoints: never two pipelines on them
}


class EmbeddedStack:
    """Starts PostgreSQL, NATS JetStream, an S3 server and the Pathway service on free loopback ports, and the
    fraud stream's supervisor (no port: it waits for a model, then runs the streaming pipeline).

    Each service keeps its data under `state_dir` and logs to `state_dir/logs/<service>.log`; `stack.json`
    records pids, ports and the WFP_* environment so another process can `attach()` and `stop()` the stack.

    Ownership: `start()` adopts the services stack.json records that still run and starts only the missing
    ones (a recorded service that died is restarted on its old ports if they are free). Leaving a `with` block
    (`stop_started()`) stops only what this object started; adopted services keep running. `stop()` stops the
    whole stack, whoever started it: that is `wfp stack down`. A service is never started over a data dir that
    a live process still uses (e.g. a server stack.json does not record): that is an error, not a second copy.
    """

    def __init__(self, state_dir: Path, services: Sequence[str] = SERVICES) -> None:
        unknown = sorted(set(services) - set(SERVICES))
        if unknown:
            raise ValueError(f"unknown services {unknown}; choose from {list(SERVICES)}")
        self.state_dir = Path(state_dir).resolve()
        self.services = tuple(services)
        self._handles: dict[str, ServiceHandle] = {}
        self._started: set[str] = set()
        self._recorded: tuple[str, ...] = ()

    @property
    def manifest_path(self) -> Path:
        return self.state_dir / MANIFEST

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def handles(self) -> dict[str, ServiceHandle]:
        """The running services by name: pids, ports, logs, startup times."""
        return dict(self._handles)

    @property
    def env(self) -> dict[str, str]:
        """The WFP_* variables that point the platform at the running services."""
        return {key: value for handle in self._handles.values() for key, value in handle.env.items()}

    @property
    def started(self) -> tuple[str, ...]:
        """The services this object started (and so stops on leaving a `with` block)."""
        return tuple(name for name in self._handles if name in self._started)

    @property
    def recorded(self) -> tuple[str, ...]:
        """The services stack.json recorded when `start()` ran, alive or not: another stack's, e.g. `wfp stack up`."""
        return self._recorded

    def start(self) -> EmbeddedStack:
        """Start the services not already running (in parallel) and wait until all are ready."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            recorded = self._read_manifest()
            self._recorded = tuple(recorded)
            self._handles = {name: h for name, h in recorded.items() if h.process.alive()}
            try:
                missing = [name for name in self.services if name not in self._handles]
                previous = {name: recorded[name] for name in missing if name in recorded}
                started = self._start_all(missing, previous)
                self._handles.update(started)
                self._started.update(started)
                self._restart_stale_dependents(started, recorded)
            finally:
                self._write_manifest()
        return self

    def stop(self) -> None:
        """Stop every service of this stack (also those recorded by another process) and forget them."""
        with self._lock():
            handles = {**self._handles, **self._read_manifest()}  # the manifest has the latest process
            errors = _in_parallel(_stop_service, handles)
            self._handles = {name: handles[name] for name in errors}
            self._started &= set(errors)
            self._write_manifest()
        _raise_stop_errors(errors)

    def stop_started(self) -> None:
        """Stop the services this object started; the ones it adopted keep running and stay in stack.json."""
        with self._lock():
            mine = {name: self._handles[name] for name in self.started}
            errors = _in_parallel(_stop_service, mine)
            stopped = {name: handle for name, handle in mine.items() if name not in errors}
            # Another process may have recorded a new server for a name since: that one stays.
            self._handles = {
                name: handle
                for name, handle in self._read_manifest().items()
                if not (name in stopped and handle.process == stopped[name].process)
            }
            self._handles.update({name: mine[name] for name in errors})
            self._started -= set(stopped)
            self._write_manifest()
        _raise_stop_errors(errors)

    @classmethod
    def attach(cls, state_dir: Path) -> EmbeddedStack | None:
        """The stack started earlier in `state_dir` if all its processes are alive, else None."""
        stack = cls(state_dir)
        handles = stack._read_manifest()
        if not handles or not all(handle.process.alive() for handle in handles.values()):
            return None
        stack.services = tuple(handles)
        stack._handles = handles
        stack._recorded = tuple(handles)
        return stack

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_started()

    def _start_all(
        self, names: Sequence[str], previous: Mapping[str, ServiceHandle]
    ) -> dict[str, ServiceHandle]:
        """All or nothing: if one service fails, the ones this call started are stopped again."""
        later = [
            name for name in names if name in _STARTERS_AFTER and set(_STARTERS_AFTER[name][0]) & set(names)
        ]
        started = self._start_parallel([name for name in names if name not in later], self.env, previous)
        try:
            env = dict(self.env)
            for handle in started.values():
                env.update(handle.env)
            started.update(self._start_parallel(later, env, previous))
        except BaseException:
            _in_parallel(_stop_service, started)
            raise
        return started

    def _restart_stale_dependents(
        self, started: Mapping[str, ServiceHandle], recorded: Mapping[str, ServiceHandle]
    ) -> None:
        """A running service whose dependency came back with other WFP_* variables (its ports were taken) still
        points at the old endpoint: replace it, so the stack works as one again."""
        for name, (needs, _) in _STARTERS_AFTER.items():
            if name not in self._handles or name in started:
                continue
            restarted = [need for need in needs if need in started]
            if all(need in recorded and recorded[need].env == started[need].env for need in restarted):
                continue
            _stop_service(self._handles.pop(name))
            replaced = self._start_parallel([name], self.env, recorded)
            self._handles.update(replaced)
            self._started.update(replaced)

    def _start_parallel(
        self, names: Sequence[str], env: Mapping[str, str], previous: Mapping[str, ServiceHandle]
    ) -> dict[str, ServiceHandle]:
        """Start `names` at once, all or nothing."""
        if not names:
            return {}
        interrupted: BaseException | None = None
        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="stack-start") as pool:
            futures = {
                name: pool.submit(self._start_service, name, env, previous.get(name)) for name in names
            }
            try:
                wait(futures.values())
            except BaseException as exc:  # e.g. Ctrl-C: let the starts finish so none is left orphaned
                interrupted = exc
        failures = [error for future in futures.values() if (error := future.exception()) is not None]
        started = {name: future.result() for name, future in futures.items() if future.exception() is None}
        if interrupted is None and not failures:
            return started
        _in_parallel(_stop_service, started)
        if interrupted is not None:
            raise interrupted
        if len(failures) == 1:
            raise failures[0]
        raise StackError("\n\n".join(str(failure) for failure in failures)) from failures[0]

    def _start_service(
        self, name: str, env: Mapping[str, str], previous: ServiceHandle | None
    ) -> ServiceHandle:
        log_path = self.log_dir / f"{name}.log"
        self._refuse_live_data_dir(name)
        ports = previous.ports if previous is not None else None
        try:
            rotate_log(log_path)
            if name in _STARTERS_AFTER:
                return _STARTERS_AFTER[name][1](self.state_dir, log_path, env, ports)
            return _STARTERS[name](self.state_dir, log_path, ports)
        except ServiceStartError:
            raise
        except Exception as exc:
            raise ServiceStartError(name, f"{type(exc).__name__}: {exc}", log_path) from exc

    def _refuse_live_data_dir(self, name: str) -> None:
        """A server still running on this data dir, though stack.json does not record it as alive (its record
        is gone, or names another pid): starting a second one would corrupt the data, stopping it is not ours."""
        if name not in _DATA_DIRS:
            return
        data_dir = self.state_dir / _DATA_DIRS[name]
        users = data_dir_users(data_dir)
        if users:
            described = "; ".join(f"pid {proc.pid}: {' '.join(proc.cmdline())[:200]}" for proc in users)
            raise ServiceStartError(
                name,
                f"its data dir {data_dir} is in use by a process this stack does not record ({described}); "
                "not starting a second server over the same data. Stop that process, then try again.",
            )

    def _read_manifest(self) -> dict[str, ServiceHandle]:
        try:
            raw = json.loads(self.manifest_path.read_text())
            return {name: ServiceHandle.from_json(entry) for name, entry in raw["services"].items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError):
            return {}  # a manifest we cannot read describes nothing we can manage

    def _write_manifest(self) -> None:
        if not self._handles:
            self.manifest_path.unlink(missing_ok=True)
            return
        manifest: dict[str, Any] = {
            "services": {name: handle.to_json() for name, handle in self._handles.items()},
            "env": self.env,
        }
        # A concurrent attach() never reads half a file; 0600: the env holds the S3 secret.
        write_atomically(self.manifest_path, json.dumps(manifest, indent=2) + "\n")

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One start/stop at a time per state dir, across processes."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / ".stack.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def _raise_stop_errors(errors: Mapping[str, BaseException]) -> None:
    if errors:
        raise StackError("\n".join(f"{name}: {error}" for name, error in errors.items()))


def _stop_service(handle: ServiceHandle) -> None:
    stopper = _STOPPERS.get(handle.name)
    if stopper is not None:
        stopper(handle)
    else:
        stop_process(handle.process)


def _in_parallel(
    action: Callable[[ServiceHandle], None], handles: dict[str, ServiceHandle]
) -> dict[str, BaseException]:
    """Run `action` on every handle at once; return the errors by service name."""
    if not handles:
        return {}
    with ThreadPoolExecutor(max_workers=len(handles), thread_name_prefix="stack") as pool:
        futures = {name: pool.submit(action, handle) for name, handle in handles.items()}
    return {name: error for name, future in futures.items() if (error := future.exception()) is not None}
