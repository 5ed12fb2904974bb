"""Links to stored objects through the platform's HTTP API (`GET /api/objects/{bucket}/{key}`, api/objects.py).

Run metadata gets these rather than presigned URLs: a presigned URL carries the store's access key id and a
signature in its query string, and run metadata is readable by anyone who can open the Dagster UI; an API link
carries nothing secret and takes the API's credentials like every read.
"""

from __future__ import annotations

from urllib.parse import quote

from workflow_platform.settings import PlatformSettings, variable

API_URL_VARIABLE = variable("api_url")  # the API's address as readers reach it; `wfp up` sets it for its runs


def object_path(bucket: str, key: str) -> str:
    return f"/api/objects/{quote(bucket, safe='')}/{quote(key, safe='/')}"


def object_url(bucket: str, key: str) -> str:
    """The API link to an object."""
    base = PlatformSettings().api_url.rstrip("/")
    return f"{base}{object_path(bucket, key)}"
