from __future__ import annotations

from typing import Any

import dagster as dg
import requests
from pydantic import PrivateAttr


class HttpResource(dg.ConfigurableResource):
    """Outgoing HTTP for the `http` plugin and registered HTTP plugins."""

    timeout_s: float = 60.0

    _session: requests.Session | None = PrivateAttr(default=None)

    def request(
        self, method: str, url: str, timeout_s: float | None = None, **kwargs: Any
    ) -> requests.Response:
        if self._session is None:
            self._session = requests.Session()
        return self._session.request(method, url, timeout=timeout_s or self.timeout_s, **kwargs)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._session is not None:
            self._session.close()
