"""Start and stop the Pathway service as a subprocess (embedded stack, tests). Never imports pathway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

_POLL_INTERVAL = 0.1


def start_pathway_service(
    host: str, port: int, log_path: Path, timeout: float = 60.0, env: Mapping[str, str] | None = None
) -> subprocess.Popen:
    """Run `python -m workflow_platform.pathway_service` and return it once GET /health answers 200.

    `env` is added to this process's environment (e.g. the WFP_S3_* variables of the store it reads inputs by
    reference from). The process gets its own session, so a Ctrl-C meant for the caller does not reach it,
    and writes stdout and stderr to `log_path`. Raises RuntimeError, with the end of the log, if it dies or is not healthy within
    `timeout` seconds; it is stopped first, so a failed start leaves nothing running.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "workflow_platform.pathway_service", "--host", host, "--port", str(port)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    try:
        wait_healthy(f"http://{host}:{port}/health", timeout, process=process)
    except RuntimeError as exc:
        stop_pathway_service(process)
        raise RuntimeError(f"{exc}\n--- end of {log_path} ---\n{_tail(log_path)}") from None
    return process


def wait_healthy(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200; RuntimeError after `timeout` seconds or if `process` exits first."""
    deadline = time.monotonic() + timeout
    last_problem = "no answer yet"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"the Pathway service exited with status {process.returncode} before {url} answered"
            )
        try:
            with urllib.request.urlopen(
                url, timeout=max(0.5, min(5.0, deadline - time.monotonic()))
            ) as response:
                if response.status == 200:
                    return
                last_problem = f"status {response.status}"
        except urllib.error.HTTPError as exc:
            last_problem = f"status {exc.code}: {_error_message(exc)}"
        except (OSError, ValueError) as exc:  # refused while starting, reset, timed out
            last_problem = str(exc)
        time.sleep(_POLL_INTERVAL)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:g} s (last: {last_problem})")


def stop_pathway_service(process: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGTERM (a clean stop), then SIGKILL if it is still running after `timeout` seconds; the exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read())["error"])
    except (ValueError, KeyError, TypeError, OSError):
        return exc.reason


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read the log: {exc})"
