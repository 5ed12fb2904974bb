from __future__ import annotations

from typing import Any

import dagster as dg
import requests
from pydantic import PrivateAttr

from workflow_platform.language.actions import ServiceHTTPError
from workflow_platform.resources.abortable_http import AbortableSession


class PathwayResource(dg.ConfigurableResource):
    """The Pathway ETL service over HTTP (`python -m workflow_platform.pathway_service`)."""

    url: str
    timeout_s: float = 300.0

    _session: AbortableSession | None = PrivateAttr(default=None)

    def call(self, method: str, path: str, body: Any = None, timeout_s: float | None = None) -> Any:
        session = self._session = self._session or AbortableSession()  # cancel() may drop self._session
        response = session.request(
            method, self.url.rstrip("/") + path, json=body, timeout=timeout_s or self.timeout_s
        )
        if response.status_code >= 400:
            raise ServiceHTTPError(response.status_code, _error_text(response))
        return response.json()

    def cancel(self) -> None:
        """Abort the call in flight, if any (from another thread: a step that timed out, a run being
        terminated); the next call opens a new session."""
        session, self._session = self._session, None
        if session is not None:
            session.abort()
            session.close()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._session is not None:
            self._session.close()


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:500]}"
    detail = (
        body.get("error") or body.get("message") or body.get("detail") if isinstance(body, dict) else body
    )
    return f"HTTP {response.status_code}: {detail}"
