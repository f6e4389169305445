"""Shared test helpers: real loopback HTTP, temp stores, waiting on I/O."""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, TimeoutError
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


T = TypeVar("T")


class Changes:
    """Wakes tests up when the code under test reports that something happened.

    Hook an instance (it is callable with any arguments) wherever the code
    already tells of a change: the tracker's event listeners, a node
    connection's ``on_ready``/``on_lost``, a wrapped protocol's
    ``dataReceived``. `until` then re-checks its condition on each change
    instead of polling. A test seam, so it lives with the tests.
    """

    def __init__(self) -> None:
        self._waiters: list[Deferred[None]] = []

    def __call__(self, *_: object) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    @property
    def waiting(self) -> int:
        """How many waiters wait for the next change (none once `until` returns)."""
        return len(self._waiters)

    def next(self) -> Deferred[None]:
        """Fires at the next change; cancelling it forgets it."""
        waiter: Deferred[None] = Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        return waiter

    async def until(
        self, check: Callable[[], T | Awaitable[T]], timeout: float = 10.0, what: str = ""
    ) -> T:
        """The first true value of ``check()`` (sync or async), re-checked at each change.

        Gives up after ``timeout`` seconds of real time: a safety net for a
        test waiting on I/O, never a pace.
        """
        deadline = reactor.seconds() + timeout
        while True:
            # Registered before checking: a change while an async check runs
            # is not missed.
            changed = self.next()
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                if not changed.called:
                    changed.cancel()
                    changed.addErrback(lambda _: None)
                return value  # type: ignore[return-value]
            try:
                await changed.addTimeout(max(0.0, deadline - reactor.seconds()), reactor)
            except TimeoutError:
                raise AssertionError(f"gave up waiting for {what or check}") from None
