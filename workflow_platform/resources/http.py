from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

import requests
from pydantic import PrivateAttr

from workflow_platform.resources.abortable_resource import AbortableSessionResource
from workflow_platform.resources.outbound import OutboundPolicy, OutboundRefused
from workflow_platform.settings import ServiceSettings

MAX_REDIRECTS = 5


class HttpResource(AbortableSessionResource):
    """Outgoing HTTP for the `http` plugin and registered HTTP plugins, inside the WFP_HTTP_ALLOW policy
    (workflow_platform/resources/outbound.py): every URL, redirects included, is checked before it is requested."""

    timeout_s: float = 60.0
    allow: str | None = None  # the policy; None: WFP_HTTP_ALLOW at run time, else "public"

    _policy: OutboundPolicy | None = PrivateAttr(default=None)

    def request(
        self, method: str, url: str, timeout_s: float | None = None, *, checked: bool = False, **kwargs: Any
    ) -> requests.Response:
        """`checked`: the URL was already allowed (a registered plugin's base URL, checked at registration)."""
        session = self.session()
        policy = self.policy()
        if not checked:
            policy.check(url)
        timeout = timeout_s or self.timeout_s
        response = session.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
        for _ in range(MAX_REDIRECTS):
            if not response.is_redirect:
                return response
            url = urljoin(response.url, response.headers["location"])
            policy.check(url)
            if response.status_code in (301, 302, 303) and method != "HEAD":
                method, kwargs = "GET", {k: v for k, v in kwargs.items() if k == "headers"}  # as browsers do
            kwargs.pop("params", None)  # already part of the first URL
            response = session.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
        if response.is_redirect:
            raise OutboundRefused(f"{url}: more than {MAX_REDIRECTS} redirects")
        return response

    def policy(self) -> OutboundPolicy:
        if self._policy is None:
            self._policy = (
                OutboundPolicy.parse(self.allow)
                if self.allow is not None
                else OutboundPolicy.from_settings(ServiceSettings())
            )
        return self._policy
