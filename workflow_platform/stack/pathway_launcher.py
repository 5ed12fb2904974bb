"""Start the Pathway service as a subprocess (embedded stack, tests). Never imports pathway."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from workflow_platform.stack.processes import http_ok, start_child

SERVICE = "pathway"


def start_pathway_service(
    host: str, port: int, log_path: Path, timeout: float = 60.0, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Run `python -m workflow_platform.pathway_service` and return it once GET /health answers 200.

    `env` is added to this process's environment (e.g. the WFP_S3_* variables of the store it reads inputs by
    reference from). The process gets its own session, so a Ctrl-C meant for the caller does not reach it,
    and writes stdout and stderr to `log_path`. Raises ServiceStartError, with the end of the log, if it dies or
    is not healthy within `timeout` seconds; it is stopped first, so a failed start leaves nothing running.
    Stop it with `processes.stop_child`.
    """
    command = [sys.executable, "-m", "workflow_platform.pathway_service", "--host", host, "--port", str(port)]
    healthy = functools.partial(http_ok, f"http://{host}:{port}/health", timeout=5.0)
    return start_child(
        SERVICE, command, log_path=log_path, ready=healthy, timeout=timeout, env={**os.environ, **(env or {})}
    )
