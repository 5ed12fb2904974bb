from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, PrivateAttr

from workflow_platform.settings import ServiceSettings

if TYPE_CHECKING:  # the minio SDK costs ~0.2 s to import: only runs that touch the store pay it
    from minio import Minio


class ObjectStoreResource(dg.ConfigurableResource):
    """An S3-compatible object store (MinIO in production, SeaweedFS in the embedded stack) through the minio SDK."""

    endpoint: str = Field(description="URL, e.g. http://minio:9000")
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    bucket: str = Field(description="bucket used when a step names none")

    _client: Any = PrivateAttr(default=None)  # a Minio client, made on first use
    _sockets: Any = PrivateAttr(default=None)  # its connections' (abortable_http.Sockets), for cancel()
    _buckets: set[str] = PrivateAttr(default_factory=set)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> ObjectStoreResource:
        """Outside a Dagster run (CLI downloads, health checks)."""
        return cls(
            endpoint=settings.require("s3_endpoint"),
            access_key=settings.require("s3_access_key"),
            secret_key=settings.require("s3_secret_key"),
            region=settings.s3_region,
            bucket=settings.s3_bucket,
        )

    def client(self) -> Minio:
        if self._client is None:
            from workflow_platform.resources.abortable_http import Sockets
            from workflow_platform.resources.s3_client import s3_client

            self._sockets = Sockets()
            self._client = s3_client(
                self.endpoint, self.access_key, self.secret_key, self.region, sockets=self._sockets
            )
        return self._client

    def cancel(self) -> None:
        """Abort the calls in flight, if any (from another thread: a step that timed out, a run being
        terminated); the next call makes a new client."""
        sockets, self._sockets, self._client = self._sockets, None, None
        if sockets is not None:
            sockets.abort()

    def ensure_bucket(self, bucket: str | None = None) -> str:
        """Create the bucket on first use, as the original system did."""
        name = bucket or self.bucket
        if name not in self._buckets:
            client = self.client()
            if not client.bucket_exists(name):
                client.make_bucket(name)
            self._buckets.add(name)
        return name
