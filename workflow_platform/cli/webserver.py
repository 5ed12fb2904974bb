"""`wfp webserver`: dagster-webserver, every option as it is, with its ASGI app behind the platform's access
policy (workflow_platform/api/access.py). The Dagster UI can launch any job, so it takes the operator token.

dagster-webserver has no authentication of its own; its CLI builds the app with
`create_app_from_workspace_process_context`, the one seam this module wraps (the Dagster family is pinned).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from workflow_platform.api.access import REALM, SESSION_COOKIE, AccessPolicy, Role
from workflow_platform.settings import PlatformSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RequireOperator:
    """ASGI middleware: the operator's credentials on every request and websocket. A browser answers the Basic
    challenge once; the session cookie set then also carries over the UI's GraphQL websocket. A state-changing
    request from another origin is refused, so a page elsewhere cannot use the browser's credentials."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.policy.enforced:
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        if self.policy.role(headers) is not Role.OPERATOR:
            await _refuse(
                scope, send, 401, "the Dagster UI needs WFP_API_TOKEN (any user name, the token as password)"
            )
            return
        if scope["type"] == "websocket" or scope["method"] in SAFE_METHODS:
            if scope["type"] == "http" and "authorization" in headers:
                send = self._with_session_cookie(send)
            await self.app(scope, receive, send)
            return
        if not _same_origin(headers):
            await _refuse(scope, send, 403, "cross-origin request refused")
            return
        await self.app(scope, receive, send)

    def _with_session_cookie(self, send: Send) -> Send:
        cookie = f"{SESSION_COOKIE}={self.policy.session_value()}; Path=/; HttpOnly; SameSite=Strict"

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        return sending


def _same_origin(headers: dict[str, str]) -> bool:
    """Browsers send Origin with every cross-origin POST; API clients send none."""
    origin = headers.get("origin")
    return origin is None or urlsplit(origin).netloc == headers.get("host")


async def _refuse(scope: Scope, send: Send, status: int, message: str) -> None:
    if scope["type"] == "websocket":  # closing before accepting: the server answers the handshake with 403
        await send({"type": "websocket.close", "code": 1008})
        return
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if status == 401:
        headers.append((b"www-authenticate", f'Basic realm="{REALM}"'.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": message.encode()})


def listen_host(args: Sequence[str]) -> str:
    """The -h/--host dagster-webserver will listen on (its default: 127.0.0.1)."""
    host = "127.0.0.1"
    for index, arg in enumerate(args):
        if arg in ("-h", "--host") and index + 1 < len(args):
            host = args[index + 1]
        elif arg.startswith("--host="):
            host = arg.split("=", 1)[1]
    return host


def serve(args: Sequence[str]) -> None:
    """Run dagster-webserver with `args`; raises ListenRefused before listening beyond loopback without a token."""
    import dagster_webserver.cli as webserver_cli

    policy = AccessPolicy.from_settings(PlatformSettings())
    policy.check_listen(listen_host(args))
    create_app = webserver_cli.create_app_from_workspace_process_context

    def create_guarded_app(*app_args: Any, **app_kwargs: Any) -> ASGIApp:
        return RequireOperator(create_app(*app_args, **app_kwargs), policy)

    webserver_cli.create_app_from_workspace_process_context = create_guarded_app
    webserver_cli.cli.main(args=list(args), prog_name="wfp webserver")
