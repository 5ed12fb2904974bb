from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from fastapi import Request

from workflow_platform.api.code_location import CodeLocationReloader
from workflow_platform.api.errors import ApiError
from workflow_platform.api.requests import MAX_BODY_BYTES
from workflow_platform.api.runs import RunSubmitter


@dataclass
class ApiConfig:
    instance: dg.DagsterInstance
    runs: RunSubmitter
    code_location: CodeLocationReloader
    submitted_dir: Path  # workflows registered through the API (one of WORKFLOWS_DIR's folders)
    plugins_file: Path  # registered HTTP plugins (WFP_PLUGINS_FILE)
    token: str | None = None  # WFP_API_TOKEN: required on mutating routes when set
    max_body: int = MAX_BODY_BYTES
    service_env: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)


def config(request: Request) -> ApiConfig:
    return request.app.state.config


def require_token(request: Request) -> None:
    """Dependency of every mutating route: a bearer token when WFP_API_TOKEN is set."""
    expected = config(request).token
    if not expected:
        return
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "this route needs 'Authorization: Bearer <WFP_API_TOKEN>'")
