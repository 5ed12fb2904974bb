"""The one way the platform builds an S3 client (the minio SDK) and reads a whole object: for Dagster runs
(ObjectStoreResource), the Pathway service, the API and the fraud commands alike. Imported lazily by its callers:
the SDK costs ~0.2 s to import."""

from __future__ import annotations

from urllib.parse import urlparse

import urllib3
from minio import Minio

from workflow_platform.resources.abortable_http import Sockets, track
from workflow_platform.settings import ServiceSettings


def s3_client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    region: str,
    retries: int = 3,
    connect_timeout_s: float = 10,
    sockets: Sockets | None = None,
) -> Minio:
    """A client for `endpoint` (http or https URL) whose HTTP pool retries 5xx answers with backoff. `sockets`:
    where its connections are recorded, for `sockets.abort()` to end its calls from another thread."""
    pool = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect_timeout_s, read=120),
        retries=urllib3.Retry(total=retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    url = urlparse(endpoint)
    return Minio(
        url.netloc or url.path,
        access_key=access_key,
        secret_key=secret_key,
        secure=url.scheme == "https",
        region=region,
        http_client=track(pool, sockets) if sockets else pool,
    )


def settings_client(settings: ServiceSettings, retries: int = 3, connect_timeout_s: float = 10) -> Minio:
    """A client for the store the WFP_S3_* settings name."""
    return s3_client(
        settings.require("s3_endpoint"),
        settings.require("s3_access_key"),
        settings.require("s3_secret_key"),
        settings.s3_region,
        retries,
        connect_timeout_s,
    )


def read_object(client: Minio, bucket: str, key: str) -> tuple[bytes, str]:
    """A whole object's bytes and content type (empty if the store gave none); its connection goes back to the
    pool. The SDK's S3Error (NoSuchKey, ...) reaches the caller, which knows what a missing object means."""
    response = client.get_object(bucket, key)
    try:
        return response.read(), response.headers.get("Content-Type", "")
    finally:
        response.close()
        response.release_conn()
