"""The API's side of the access policy (workflow_platform/api/access.py): reads need the viewer or operator token,
everything else the operator token. Liveness (/api/health) and the API's own documentation are public."""

from __future__ import annotations

from fastapi import Request

from workflow_platform.api.access import Role
from workflow_platform.api.config import config
from workflow_platform.api.errors import ApiError

PUBLIC_PATHS = frozenset({"/api/health"})
READ_METHODS = frozenset({"GET", "HEAD"})
BROWSER_PATHS = ("/api/objects/",)


def authorize(request: Request) -> None:
    """Dependency of every route (set on the application)."""
    if request.url.path in PUBLIC_PATHS:
        return
    needed = Role.VIEWER if request.method in READ_METHODS else Role.OPERATOR
    role = config(request).access.role(request.headers)
    if role >= needed:
        return
    if role is Role.NONE:
        # A stored object's link is opened in a browser (from the Dagster UI): ask for Basic credentials, which a
        # browser prompts for (the token as the password); API clients send the Bearer token.
        scheme = "Basic" if request.url.path.startswith(BROWSER_PATHS) else "Bearer"
        raise ApiError(
            401,
            "unauthorized",
            "this route needs 'Authorization: Bearer <token>' (WFP_API_TOKEN; WFP_API_READ_TOKEN for reads)",
            headers={"WWW-Authenticate": f'{scheme} realm="workflow-platform"'},
        )
    raise ApiError(
        403, "forbidden", "the viewer token (WFP_API_READ_TOKEN) only reads; this needs WFP_API_TOKEN"
    )
