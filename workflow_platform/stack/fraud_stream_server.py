"""The streaming fraud pipeline's supervisor (`python -m workflow_platform.fraud_stream`), never imported here.

It waits idle (no Pathway loaded) until a model is stored, then runs the pipeline as its child and obeys the
control bucket in NATS (see workflow_platform/fraud_stream). Its state lives under `<state dir>/fraud-stream`:
the checkpoints and the status file it rewrites every beat, which tells the stack it is up.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from workflow_platform.stack.processes import ProcessRef, ServiceHandle, start_child

SERVICE = "fraud-stream"
DATA_DIR = "fraud-stream"
# Up once it has written its first status: after reaching NATS and the object store, a second or two.
TIMEOUT = 60.0


def start(
    state_dir: Path, log_path: Path, env: Mapping[str, str], ports: Mapping[str, int] | None = None
) -> ServiceHandle:
    """Start the supervisor with `env` (the stack's WFP_* variables: NATS, PostgreSQL, the object store). It
    listens on no port (`ports` is unused)."""
    began = time.monotonic()
    home = state_dir / DATA_DIR
    status = home / "status.json"
    status.unlink(missing_ok=True)  # a previous run's: not this one's first beat
    command = [sys.executable, "-m", "workflow_platform.fraud_stream"]
    command += ["--persistence-dir", str(home / "persistence"), "--status-file", str(status)]
    process = start_child(
        SERVICE, command, log_path=log_path, ready=status.exists, timeout=TIMEOUT, env={**os.environ, **env}
    )
    return ServiceHandle(
        name=SERVICE,
        process=ProcessRef.of(process.pid),
        ports={},
        env={},
        log=str(log_path),
        startup_seconds=round(time.monotonic() - began, 3),
        data_dir=str(home),
    )
