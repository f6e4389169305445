"""Shared test helpers: real loopback HTTP, temp stores, waiting on I/O."""

from __future__ import annotations

import json
import os
from typing import Any

import attrs
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from dialgw.store import open_sqlite_store


@attrs.frozen
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HTTPClient:
    """treq over a private connection pool, closed at cleanup."""

    def __init__(self, testcase, base_url: str) -> None:
        self.base_url = base_url
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        testcase.addCleanup(self.pool.closeCachedConnections)

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      body: bytes | None = None) -> Reply:
        response = await treq.request(
            method, self.base_url + path, headers=headers or {}, data=body, pool=self.pool
        )
        content = await response.content()
        flat = {
            name.decode("latin-1").lower(): values[-1].decode("latin-1")
            for name, values in response.headers.getAllRawHeaders()
        }
        return Reply(response.code, flat, content)


async def listen_http(testcase, resource) -> str:
    """Serve ``resource`` on 127.0.0.1 (a free port); returns the base URL."""
    site = Site(resource)
    site.displayTracebacks = False
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    testcase.addCleanup(port.stopListening)
    return f"http://127.0.0.1:{port.getHost().port}"


async def temp_store(testcase):
    directory = testcase.mktemp()
    os.mkdir(directory)
    store = await open_sqlite_store(reactor, os.path.join(directory, "dialgw.sqlite"))
    testcase.addCleanup(store.close)
    return store


def with_timeout(d: Deferred, seconds: float = 10.0) -> Deferred:
    """A real-time safety net: a test waiting on I/O fails instead of hanging."""
    return d.addTimeout(seconds, reactor)
