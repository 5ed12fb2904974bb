"""Who may do what: the platform's two roles, their credentials, and where the platform may listen.

Submitting or running a workflow is running code (SQL, HTTP calls, objects written), so it takes the operator
token, WFP_API_TOKEN: every API route that writes, and the Dagster UI, which can launch any job. A viewer token,
WFP_API_READ_TOKEN, reads executions, workflows and plugins through the API. Without WFP_API_TOKEN the platform
only listens on loopback, where it trusts whoever can reach it (the machine's own users).

Credentials come as `Authorization: Bearer <token>` (API clients) or HTTP Basic with the token as the password
(browsers: the Dagster UI asks once, then a session cookie derived from the token also carries it over the UI's
websocket).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie

from workflow_platform.settings import PlatformSettings

SESSION_COOKIE = "wfp_session"
REALM = "workflow-platform"


class Role(enum.IntEnum):
    NONE = 0
    VIEWER = 1
    OPERATOR = 2


class ListenRefused(RuntimeError):
    """The platform was asked to listen beyond loopback without credentials."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AccessPolicy:
    operator_token: str | None = None
    viewer_token: str | None = None

    @classmethod
    def from_settings(cls, settings: PlatformSettings) -> AccessPolicy:
        return cls(settings.api_token, settings.api_read_token)

    @property
    def enforced(self) -> bool:
        """With no operator token there is nothing to check: the platform is loopback-only (check_listen)."""
        return self.operator_token is not None

    def check_listen(self, host: str) -> None:
        if not self.enforced and not is_loopback(host):
            raise ListenRefused(
                f"refusing to listen on {host} without credentials: set WFP_API_TOKEN (a long random secret, "
                "e.g. `openssl rand -hex 32`) so the API and the Dagster UI require it, or listen on 127.0.0.1"
            )
        if self.enforced and self.viewer_token == self.operator_token:
            raise ListenRefused("WFP_API_READ_TOKEN must differ from WFP_API_TOKEN")

    def operator_headers(self) -> dict[str, str]:
        """What the platform's own clients (e.g. `wfp up` reloading the code location) send."""
        return {"Authorization": f"Bearer {self.operator_token}"} if self.operator_token else {}

    def role(self, headers: Mapping[str, str]) -> Role:
        """The role the request's credentials give (headers with lower-case names, as ASGI has them)."""
        if not self.enforced:
            return Role.OPERATOR
        token = _presented_token(headers.get("authorization", ""))
        if token is None:
            cookie = SimpleCookie(headers.get("cookie", "")).get(SESSION_COOKIE)
            if cookie is not None and hmac.compare_digest(cookie.value, self.session_value()):
                return Role.OPERATOR
            return Role.NONE
        if _same(token, self.operator_token):
            return Role.OPERATOR
        if _same(token, self.viewer_token):
            return Role.VIEWER
        return Role.NONE

    def session_value(self) -> str:
        """The UI's session cookie: derived from the operator token, so rotating the token ends every session."""
        assert self.operator_token is not None
        return hmac.new(self.operator_token.encode(), b"wfp-ui-session", hashlib.sha256).hexdigest()


def _same(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def _presented_token(authorization: str) -> str | None:
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]  # any user name; the token is the password
    return None
