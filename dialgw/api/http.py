"""HTTP requests with limits: no body over 64 KiB is read, no body trickles.

`twisted.web` would buffer any body before the API sees it, and its idle
timeout is reset by every byte. `LimitedRequest` refuses a body that
declares (or reaches) more than `MAX_REQUEST_BODY` bytes with a 413 as soon
as it knows, and gives the whole body `BODY_DEADLINE_SEC` to arrive.
"""

from __future__ import annotations

import json
import uuid

from twisted.logger import Logger
from twisted.web.server import Request, Site

from dialgw.api.validation import MAX_BODY_BYTES

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
        self._deadline = self.channel.site.reactor.callLater(BODY_DEADLINE_SEC, self._too_slow)
        if length is not None and length > MAX_REQUEST_BODY:
            self._refuse(413, "body_too_large", "body is over 64 KiB")
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > MAX_REQUEST_BODY:
            self._refuse(413, "body_too_large", "body is over 64 KiB")
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._cancel_deadline()
        if self._refused:
            return
        super().requestReceived(command, path, version)

    def connectionLost(self, reason) -> None:
        self._cancel_deadline()
        super().connectionLost(reason)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        log.info("request body not received within {sec}s; connection closed", sec=BODY_DEADLINE_SEC)
        self._refuse(408, "request_timeout", "the request body did not arrive in time")

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer at once and close: the rest of the body is never read."""
        if self._refused:
            return
        self._refused = True
        self._cancel_deadline()
        body = json.dumps({"error": code, "message": message}).encode()
        given = self.requestHeaders.getRawHeaders(b"x-request-id", [b""])[-1]
        rid = given if 0 < len(given) <= 128 and given.isascii() and b" " not in given else None
        rid = rid or str(uuid.uuid4()).encode()
        reason = {413: b"Payload Too Large", 408: b"Request Timeout"}[status]
        transport = self.channel.transport
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"X-Request-ID: %s\r\nConnection: close\r\n\r\n%s"
            % (status, reason, len(body), rid, body)
        )
        transport.loseConnection()


class _Site(Site):
    """A Site without Twisted's access log: `dialgw.ops.RequestLog` writes
    the one line per request (with its request ID and app), and a second,
    combined-format line per request would cost as much again."""

    def log(self, request: Request) -> None:
        pass


def api_site(root, clock) -> Site:
    """The Site every dialgw listener uses: limited requests, no tracebacks."""
    site = _Site(root, timeout=IDLE_TIMEOUT_SEC, reactor=clock)
    site.requestFactory = LimitedRequest
    site.displayTracebacks = False
    return site
