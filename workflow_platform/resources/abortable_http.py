"""HTTP calls that another thread can abort (a step that timed out, a run being terminated).

A requests/urllib3 timeout bounds each wait for bytes, not the call: a server that trickles its answer never
trips it. Closing a session only closes its idle connections, not the one a thread is reading from. So the
clients here record the socket of every connection they open, and `abort()` shuts those sockets down: a thread
blocked reading one gets an error at once, and connections opened afterwards are refused.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import weakref
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter


class Sockets:
    """The sockets of one client's connections, to shut down from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.aborted = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            if self.aborted:  # connected while being aborted: this call is cancelled too
                _shut(sock)
                raise ConnectionAbortedError("the call was cancelled")
            self._open.add(sock)

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            for sock in list(self._open):
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for TLS sockets: it wakes a thread blocked in recv (close does not), and
    # it needs no TLS close_notify exchange with a peer that may not answer.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def track(manager: urllib3.PoolManager, sockets: Sockets) -> urllib3.PoolManager:
    """Make `manager` record the sockets of the connections it opens in `sockets`."""
    manager.pool_classes_by_scheme = {
        scheme: pool if getattr(pool, "sockets", None) is sockets else _tracking_pool(pool, sockets)
        for scheme, pool in manager.pool_classes_by_scheme.items()
    }
    return manager


def _tracking_pool(pool: type, sockets: Sockets) -> type:
    class Connection(pool.ConnectionCls):
        def connect(self) -> None:
            super().connect()
            sockets.add(self.sock)

    return type(pool.__name__, (pool,), {"ConnectionCls": Connection, "sockets": sockets})


class _TrackingAdapter(HTTPAdapter):
    def __init__(self, sockets: Sockets) -> None:
        self._sockets = sockets  # before super().__init__, which makes the pool manager
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        track(self.poolmanager, self._sockets)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> urllib3.PoolManager:
        return track(super().proxy_manager_for(proxy, **proxy_kwargs), self._sockets)


class AbortableSession(requests.Session):
    """A requests session whose calls in flight `abort()` ends from another thread; aborted, it stays unusable."""

    def __init__(self) -> None:
        super().__init__()
        self.sockets = Sockets()
        for prefix in ("http://", "https://"):
            self.mount(prefix, _TrackingAdapter(self.sockets))

    def abort(self) -> None:
        self.sockets.abort()
