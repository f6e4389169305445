"""HTTP requests with limits: no body over 64 KiB is read, no body trickles.

`twisted.web` would buffer any body before the API sees it, and its idle
timeout is reset by every byte. `LimitedRequest` refuses a body that
declares (or reaches) more than `MAX_REQUEST_BODY` bytes with a 413 as soon
as it knows, and gives the whole body `BODY_DEADLINE_SEC` to arrive.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from dialgw.api.errors import BODY_TOO_LARGE, REASONS, REQUEST_TIMEOUT, ApiError
from dialgw.api.validation import MAX_BODY_BYTES
from dialgw.ids import is_request_id, new_uuid

log = Logger()

MAX_REQUEST_BODY = MAX_BODY_BYTES
#: From the end of the headers to the last byte of the body.
BODY_DEADLINE_SEC = 30.0
#: An idle connection (no request in progress) is closed after this long.
IDLE_TIMEOUT_SEC = 75


class LimitedRequest(Request):
    _received = 0
    _deadline = None
    _refused = False

    def gotLength(self, length: int | None) -> None:
        # The site's reactor: the daemon's clock (a task.Clock in tests).
        # (Site sets ``channel.site``; Twisted's stubs do not know it.)
        clock: IReactorTime = self.channel.site.reactor  # type: ignore[attr-defined]
        self._deadline = clock.callLater(BODY_DEADLINE_SEC, self._too_slow)
        if length is not None and length > MAX_REQUEST_BODY:
            self._refuse(BODY_TOO_LARGE)
            return
        super().gotLength(length)  # type: ignore[no-untyped-call]  # untyped in Twisted

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > MAX_REQUEST_BODY:
            self._refuse(BODY_TOO_LARGE)
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]  # untyped in Twisted

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._cancel_deadline()
        if self._refused:
            return
        super().requestReceived(command, path, version)  # type: ignore[no-untyped-call]  # untyped in Twisted

    def connectionLost(self, reason: Failure) -> None:
        self._cancel_deadline()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]  # untyped in Twisted

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        log.info("request body not received within {sec}s; connection closed", sec=BODY_DEADLINE_SEC)
        self._refuse(REQUEST_TIMEOUT)

    def _refuse(self, error: ApiError) -> None:
        """Answer at once and close: the rest of the body is never read."""
        if self._refused:
            return
        self._refused = True
        self._cancel_deadline()
        body = error.encoded()
        given = self.requestHeaders.getRawHeaders(b"x-request-id", [b""])[-1].decode("latin-1")
        rid = (given if is_request_id(given) else new_uuid()).encode("ascii")
        transport = self.channel.transport
        assert transport is not None  # a request lives on a connection
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"X-Request-ID: %s\r\nConnection: close\r\n\r\n%s"
            % (error.status, REASONS[error.status], len(body), rid, body)
        )
        transport.loseConnection()


class _Site(Site):
    """A Site without Twisted's access log: `dialgw.ops.RequestLog` writes
    the one line per request (with its request ID and app), and a second,
    combined-format line per request would cost as much again."""

    def log(self, request: http.Request) -> None:
        pass


def api_site(root: Resource, clock: IReactorTime) -> Site:
    """The Site every dialgw listener uses: limited requests, no tracebacks."""
    # Site's constructor is untyped in Twisted; its reactor is only used as a clock.
    site = _Site(root, timeout=IDLE_TIMEOUT_SEC, reactor=clock)  # type: ignore[no-untyped-call]
    site.requestFactory = LimitedRequest
    site.displayTracebacks = False
    return site
