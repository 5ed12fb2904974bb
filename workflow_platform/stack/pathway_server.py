"""The Pathway ETL service (`python -m workflow_platform.pathway_service`), started by its own launcher."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import workflow_platform
from workflow_platform.settings import variable
from workflow_platform.stack.pathway_launcher import SERVICE, start_pathway_service
from workflow_platform.stack.processes import (
    LOOPBACK,
    ProcessRef,
    ServiceHandle,
    free_ports,
    ports_free,
)

# Importing pathway alone takes about a second; its engine needs a few more to serve.
TIMEOUT = 60.0


def available() -> bool:
    return (Path(workflow_platform.__file__).parent / "pathway_service" / "__main__.py").exists()


def start(
    state_dir: Path, log_path: Path, env: Mapping[str, str], ports: Mapping[str, int] | None = None
) -> ServiceHandle:
    """Start the service with `env` (the stack's WFP_* variables: it reads inputs by reference from S3), on
    `ports` (a previous run's, to keep its URL) when it is still free."""
    began = time.monotonic()
    previous = (ports or {}).get("http")
    (port,) = [previous] if previous and ports_free([previous]) else free_ports()
    # Starts the service in its own session and returns once GET /health answers 200.
    process = start_pathway_service(LOOPBACK, port, log_path, timeout=TIMEOUT, env=env)
    return ServiceHandle(
        name=SERVICE,
        process=ProcessRef.of(process.pid),
        ports={"http": port},
        env={variable("pathway_url"): f"http://{LOOPBACK}:{port}"},
        log=str(log_path),
        startup_seconds=round(time.monotonic() - began, 3),
    )
