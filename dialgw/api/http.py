"""HTTP connections with limits: deadlines for headers and bodies, no body over 64 KiB.

`twisted.web` would buffer any body before the API sees it, and its idle
timeout is reset by every byte. Here:

- a request's headers must all arrive within `HEADERS_DEADLINE_SEC` of its
  first byte (`LimitedChannel`), and its body within `BODY_DEADLINE_SEC` of
  the end of the headers (`LimitedRequest`); too slow is a 408 and the
  connection is closed;
- a body that declares (or reaches) more than `MAX_REQUEST_BODY` bytes is
  never read: none of it is kept, the request goes to the API at once with
  `RequestContext.body_too_large` set, and the API authenticates it first
  (401, SPEC §1's order) before answering 413. The connection is then closed.
"""

from __future__ import annotations

from io import BytesIO

from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from dialgw.api.context import context_of
from dialgw.api.errors import REASONS, ApiError, request_timeout
from dialgw.api.validation import MAX_BODY_BYTES
from dialgw.ids import is_request_id, new_uuid

log = Logger()

MAX_REQUEST_BODY = MAX_BODY_BYTES
#: From a request's first byte to the end of its headers.
HEADERS_DEADLINE_SEC = 30.0
#: From the end of the headers to the last byte of the body.
BODY_DEADLINE_SEC = 30.0
#: An idle connection (no request in progress) is closed after this long.
IDLE_TIMEOUT_SEC = 75


def _answer_and_close(transport: ITransport, error: ApiError, headers: Headers) -> None:
    """Answer ``error`` straight on the connection and close it (no request to answer through)."""
    body = error.encoded()
    given = headers.getRawHeaders(b"x-request-id", [b""])[-1].decode("latin-1")
    rid = (given if is_request_id(given) else new_uuid()).encode("ascii")
    transport.write(
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        b"X-Request-ID: %s\r\nConnection: close\r\n\r\n%s"
        % (error.status, REASONS[error.status], len(body), rid, body)
    )
    transport.loseConnection()


def _cancel(call: IDelayedCall | None) -> None:
    """Cancel ``call`` if it is still to run."""
    if call is not None and call.active():
        call.cancel()


class LimitedRequest(Request):
    _received = 0
    _deadline: IDelayedCall | None = None
    _refused = False
    #: The body went over `MAX_REQUEST_BODY`: nothing of it is kept or read
    #: any more, and the request is answered at once (`LimitedChannel`).
    too_large = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > MAX_REQUEST_BODY:
            self._over_limit()
            return
        # The site's reactor: the daemon's clock (a task.Clock in tests).
        # (Site sets ``channel.site``; Twisted's stubs do not know it.)
        clock: IReactorTime = self.channel.site.reactor  # type: ignore[attr-defined]
        self._deadline = clock.callLater(BODY_DEADLINE_SEC, self._too_slow)
        super().gotLength(length)  # type: ignore[no-untyped-call]  # untyped in Twisted

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused or self.too_large:
            return
        self._received += len(data)
        if self._received > MAX_REQUEST_BODY:
            self._over_limit()
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

    def _over_limit(self) -> None:
        self.too_large = True
        self._cancel_deadline()
        self.content = BytesIO()  # what was kept of the body goes
        # No "100 Continue": the body is not wanted.
        self.requestHeaders.removeHeader(b"expect")
        self.responseHeaders.setRawHeaders(b"connection", [b"close"])
        context_of(self).body_too_large = True

    def _cancel_deadline(self) -> None:
        _cancel(self._deadline)
        self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        log.info("request body not received within {sec}s; connection closed", sec=BODY_DEADLINE_SEC)
        self._refused = True
        transport = self.channel.transport
        assert transport is not None  # a request lives on a connection
        _answer_and_close(transport, request_timeout("body"), self.requestHeaders)


class LimitedChannel(http.HTTPChannel):
    """One HTTP connection: a deadline for each request's headers, and a
    request whose body is over the limit is answered without reading it."""

    _headers_deadline: IDelayedCall | None = None
    #: Between requests, or receiving one's headers (not its body or answer).
    _reading_headers = True

    def dataReceived(self, data: bytes) -> None:
        # The deadline starts at a request's first byte: an idle connection
        # is left to the idle timeout.
        if data and self._reading_headers and self._headers_deadline is None:
            # (The site's clock: `HTTPFactory.buildProtocol` sets ``callLater``.)
            self._headers_deadline = self.callLater(  # type: ignore[no-untyped-call]
                HEADERS_DEADLINE_SEC, self._headers_too_slow
            )
        super().dataReceived(data)  # type: ignore[no-untyped-call]  # untyped in Twisted

    def allHeadersReceived(self) -> None:
        self._reading_headers = False
        self._cancel_headers_deadline()
        super().allHeadersReceived()  # type: ignore[no-untyped-call]  # untyped in Twisted
        if self._over_limit():
            # The channel takes a zero length as "no body": the request
            # is dispatched now, and what follows on the connection is
            # only buffered (a little) until it is closed.
            self.length = 0

    def rawDataReceived(self, data: bytes) -> None:
        super().rawDataReceived(data)
        if not self._handlingRequest and self._over_limit():
            # A body (chunked, say) just went over the limit: answer now.
            self.allContentReceived()  # type: ignore[no-untyped-call]  # untyped in Twisted

    def requestDone(self, request: Request) -> None:
        self._reading_headers = True
        super().requestDone(request)  # type: ignore[no-untyped-call]  # untyped in Twisted

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel_headers_deadline()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]  # untyped in Twisted

    def _over_limit(self) -> bool:
        """Whether the request being received has a body over the limit
        (then the connection is not kept after its answer)."""
        if not self.requests or not getattr(self.requests[-1], "too_large", False):
            return False
        if self.transport is None or getattr(self.transport, "disconnecting", False):
            return False  # already answered (a malformed request, say)
        self.persistent = False
        return True

    def _cancel_headers_deadline(self) -> None:
        _cancel(self._headers_deadline)
        self._headers_deadline = None

    def _headers_too_slow(self) -> None:
        self._headers_deadline = None
        log.info("request headers not received within {sec}s; connection closed", sec=HEADERS_DEADLINE_SEC)
        self._reading_headers = False
        assert self.transport is not None  # the deadline is cancelled when the connection goes
        headers = self.requests[-1].requestHeaders if self.requests else Headers()
        _answer_and_close(self.transport, request_timeout("headers"), headers)


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
    site.protocol = LimitedChannel  # type: ignore[assignment]
    site.requestFactory = LimitedRequest
    site.displayTracebacks = False
    return site
