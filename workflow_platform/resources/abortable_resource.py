"""The part HTTP-calling resources share: one session per run that another thread can abort."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from workflow_platform.resources.abortable_http import AbortableSession


class AbortableSessionResource(dg.ConfigurableResource):
    """A resource whose calls go through one AbortableSession, opened on first use and closed at teardown."""

    _session: AbortableSession | None = PrivateAttr(default=None)

    def session(self) -> AbortableSession:
        self._session = self._session or AbortableSession()  # cancel() may have dropped the last one
        return self._session

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
