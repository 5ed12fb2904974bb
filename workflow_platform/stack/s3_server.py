"""An S3 endpoint from moto's real server (in memory: objects do not survive a restart)."""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

from workflow_platform.settings import ServiceSettings
from workflow_platform.stack.processes import (
    LOOPBACK,
    ServiceHandle,
    ServiceStartError,
    free_ports,
    http_ok,
    start_detached,
    stop_process,
)

SERVICE = "s3"
# moto accepts any credentials; fixed ones keep the env stable across restarts.
ACCESS_KEY = "wfp-local"
SECRET_KEY = "wfp-local-secret"
REGION = "us-east-1"


def start(state_dir: Path, log_path: Path) -> ServiceHandle:
    began = time.monotonic()
    (port,) = free_ports()
    argv = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)]
    env = {**os.environ, "MOTO_PORT": str(port)}  # moto builds its own URLs from MOTO_PORT
    ready = functools.partial(http_ok, f"http://{LOOPBACK}:{port}/moto-api/")
    ref = start_detached(SERVICE, argv, log_path=log_path, ready=ready, timeout=30, env=env)
    bucket = ServiceSettings().s3_bucket
    try:
        _ensure_bucket(f"{LOOPBACK}:{port}", bucket)
    except Exception as exc:
        stop_process(ref)
        raise ServiceStartError(SERVICE, f"creating bucket {bucket!r} failed: {exc}", log_path) from exc
    return ServiceHandle(
        name=SERVICE,
        process=ref,
        ports={"http": port},
        env={
            "WFP_S3_ENDPOINT": f"http://{LOOPBACK}:{port}",
            "WFP_S3_ACCESS_KEY": ACCESS_KEY,
            "WFP_S3_SECRET_KEY": SECRET_KEY,
            "WFP_S3_REGION": REGION,
            "WFP_S3_BUCKET": bucket,
        },
        log=str(log_path),
        startup_seconds=round(time.monotonic() - began, 3),
    )


def _ensure_bucket(endpoint: str, bucket: str) -> None:
    from minio import Minio  # imported here: only this step of the stack needs the SDK

    client = Minio(endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION, secure=False)
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
