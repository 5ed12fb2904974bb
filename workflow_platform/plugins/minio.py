"""Object store actions (MinIO / any S3). Objects and lists are stored as JSON, text as UTF-8."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from workflow_platform.language.actions import (
    Action,
    ActionError,
    ActionInput,
    ActionOutput,
    StepContext,
    Touched,
    plugin,
)

if TYPE_CHECKING:  # clients and resources are heavy imports; validation must stay light
    from minio.error import S3Error

    from workflow_platform.resources.object_store import ObjectStoreResource


class _ObjectInput(ActionInput):
    key: str = Field(
        min_length=1, max_length=1024, description="object key, e.g. reports/daily-2025-10-31.json"
    )
    bucket: str | None = Field(None, description="default: the platform's bucket (WFP_S3_BUCKET)")


class PutObjectInput(_ObjectInput):
    data: Any = Field(description="an object or list (stored as JSON) or a string (stored as is)")
    contentType: str | None = Field(None, description="default: application/json, or text/plain for strings")
    metadata: dict[str, str] = Field(default_factory=dict)


class GetObjectInput(_ObjectInput):
    format: Literal["auto", "json", "text"] = "auto"


class ListObjectsInput(ActionInput):
    prefix: str = ""
    bucket: str | None = None
    recursive: bool = True
    limit: int = Field(1000, ge=1, le=100_000)


class PresignedUrlInput(_ObjectInput):
    expiresSeconds: int = Field(3600, ge=1, le=7 * 24 * 3600)
    method: Literal["GET", "PUT"] = "GET"


def object_asset_key(bucket: str, key: str) -> tuple[str, ...]:
    return ("s3", bucket, *[part for part in key.split("/") if part])


def encode(data: Any, content_type: str | None) -> tuple[bytes, str]:
    if isinstance(data, str):
        return data.encode(), content_type or "text/plain; charset=utf-8"
    if isinstance(data, bytes):
        return data, content_type or "application/octet-stream"
    return json.dumps(data, ensure_ascii=False, indent=2).encode(), content_type or "application/json"


def put_object(store: ObjectStoreResource, spec: PutObjectInput, ctx: StepContext) -> ActionOutput:
    bucket = store.ensure_bucket(spec.bucket)
    body, content_type = encode(spec.data, spec.contentType)
    written = store.client().put_object(
        bucket,
        spec.key,
        io.BytesIO(body),
        len(body),
        content_type=content_type,
        metadata=spec.metadata or None,
    )
    result = {
        "bucket": bucket,
        "key": spec.key,
        "size": len(body),
        "etag": written.etag,
        "versionId": written.version_id,
        "contentType": content_type,
        "url": f"s3://{bucket}/{spec.key}",
    }
    metadata = {"bucket": bucket, "key": spec.key, "size": len(body), "etag": written.etag}
    return ActionOutput(result, [Touched(object_asset_key(bucket, spec.key), "object written", metadata)])


def _not_found(error: S3Error) -> bool:
    return error.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject")


def read_input_object(store: ObjectStoreResource, bucket: str, key: str) -> tuple[bytes, str]:
    """An object's bytes and content type; a missing object (or bucket) is the step's input error."""
    from minio.error import S3Error

    from workflow_platform.resources.s3_client import read_object

    try:
        return read_object(store.client(), bucket, key)
    except S3Error as error:
        if _not_found(error):
            raise ActionError(f"object s3://{bucket}/{key} does not exist") from None
        raise


def get_object(store: ObjectStoreResource, spec: GetObjectInput, ctx: StepContext) -> ActionOutput:
    bucket = spec.bucket or store.bucket
    body, content_type = read_input_object(store, bucket, spec.key)
    text = body.decode("utf-8", errors="replace")
    data: Any = text
    if spec.format == "json" or (spec.format == "auto" and "json" in content_type):
        try:
            data = json.loads(text)
        except ValueError:
            if spec.format == "json":
                raise ActionError(f"object s3://{bucket}/{spec.key} is not JSON") from None
    result = {"bucket": bucket, "key": spec.key, "size": len(body), "contentType": content_type, "data": data}
    touched = Touched(object_asset_key(bucket, spec.key), "object read", {"size": len(body)}, wrote=False)
    return ActionOutput(result, [touched])


def list_objects(store: ObjectStoreResource, spec: ListObjectsInput, ctx: StepContext) -> ActionOutput:
    bucket = spec.bucket or store.bucket
    objects = []
    for item in store.client().list_objects(bucket, prefix=spec.prefix or None, recursive=spec.recursive):
        if len(objects) >= spec.limit:
            break
        modified = item.last_modified.isoformat() if item.last_modified else None
        objects.append(
            {"key": item.object_name, "size": item.size, "etag": item.etag, "lastModified": modified}
        )
    return ActionOutput({"bucket": bucket, "prefix": spec.prefix, "objects": objects, "count": len(objects)})


def delete_object(store: ObjectStoreResource, spec: _ObjectInput, ctx: StepContext) -> ActionOutput:
    bucket = spec.bucket or store.bucket
    store.client().remove_object(bucket, spec.key)
    return ActionOutput({"bucket": bucket, "key": spec.key, "deleted": True})


def presigned_url(store: ObjectStoreResource, spec: PresignedUrlInput, ctx: StepContext) -> ActionOutput:
    bucket = spec.bucket or store.bucket
    url = store.client().get_presigned_url(
        spec.method, bucket, spec.key, expires=timedelta(seconds=spec.expiresSeconds)
    )
    return ActionOutput(
        {"bucket": bucket, "key": spec.key, "url": url, "expiresSeconds": spec.expiresSeconds}
    )


MINIO = plugin(
    "minio",
    "S3-compatible object store (MinIO): store and fetch objects",
    "object_store",
    Action("putObject", PutObjectInput, put_object, "store data under a key (bucket created on first use)"),
    Action("getObject", GetObjectInput, get_object, "read an object (JSON parsed)"),
    Action("listObjects", ListObjectsInput, list_objects, "list objects under a prefix"),
    Action("deleteObject", _ObjectInput, delete_object, "delete an object"),
    Action("presignedUrl", PresignedUrlInput, presigned_url, "a time-limited URL to an object"),
)
