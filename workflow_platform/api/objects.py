"""Objects that workflows stored, served by the API: the link a run's metadata gives for each object it wrote.

The links come from object_links.py (why not presigned URLs: see there).

What a workflow stored is the workflow's content (a report's HTML, say): it is served with a sandbox content
security policy, so a page opened from here runs no script and cannot act with the reader's credentials.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from workflow_platform.api.errors import ApiError, ErrorBody

router = APIRouter(prefix="/api", tags=["objects"])

MAX_OBJECT_BYTES = 256 * 1024 * 1024


def _read(bucket: str, key: str) -> tuple[bytes, str]:
    from minio.error import S3Error

    from workflow_platform.resources.s3_client import read_object, settings_client
    from workflow_platform.settings import ServiceSettings

    client = settings_client(ServiceSettings(), retries=1)
    try:
        stat = client.stat_object(bucket, key)
        if (stat.size or 0) > MAX_OBJECT_BYTES:
            raise ApiError(
                413, "too_large", f"s3://{bucket}/{key} has {stat.size} bytes; the API serves up to 256 MiB"
            )
        body, _ = read_object(client, bucket, key)
        return body, stat.content_type or "application/octet-stream"
    except ValueError:  # the SDK refuses a name S3 cannot have
        raise ApiError(404, "not_found", f"no object s3://{bucket}/{key}") from None
    except S3Error as error:
        status = getattr(error.response, "status", 500)
        if status < 500:  # NoSuchKey, NoSuchBucket, a name the store refuses: nothing to serve there
            raise ApiError(404, "not_found", f"no object s3://{bucket}/{key} ({error.code})") from None
        raise ApiError(502, "object_store_error", f"the object store answered {error.code}") from None


@router.get(
    "/objects/{bucket}/{key:path}",
    responses={404: {"model": ErrorBody, "description": "no such object"}},
    response_class=Response,
)
async def get_object(bucket: str, key: str) -> Response:
    """An object a workflow stored, with its content type (the link in a run's metadata)."""
    body, content_type = await run_in_threadpool(_read, bucket, key)
    name = key.rsplit("/", 1)[-1]
    return Response(
        body,
        media_type=content_type,
        headers={
            "Content-Security-Policy": "sandbox",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}",
        },
    )
