from __future__ import annotations

from typing import Any

import requests

from workflow_platform.language.actions import ServiceHTTPError
from workflow_platform.resources.abortable_resource import AbortableSessionResource
from workflow_platform.settings import ServiceSettings


class PathwayResource(AbortableSessionResource):
    """The Pathway ETL service over HTTP (`python -m workflow_platform.pathway_service`)."""

    url: str
    timeout_s: float = 300.0

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> PathwayResource:
        return cls(url=settings.require("pathway_url"))

    def call(self, method: str, path: str, body: Any = None, timeout_s: float | None = None) -> Any:
        response = self.session().request(
            method, self.url.rstrip("/") + path, json=body, timeout=timeout_s or self.timeout_s
        )
        if response.status_code >= 400:
            raise ServiceHTTPError(response.status_code, _error_text(response))
        return response.json()


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:500]}"
    detail = (
        body.get("error") or body.get("message") or body.get("detail") if isinstance(body, dict) else body
    )
    return f"HTTP {response.status_code}: {detail}"
