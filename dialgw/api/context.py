"""What the API learns about one request, for the request log and metrics.

One typed `RequestContext` per request, reached only through `context_of`:
the API (and `dialgw.api.http`, for what the connection saw) writes it,
the API and `dialgw.ops.RequestLog` read it. It is kept beside the
request (weakly), not as ad-hoc attributes on it.
"""

from __future__ import annotations

from typing import IO, Protocol
from weakref import WeakKeyDictionary

import attrs
from twisted.internet.defer import Deferred


class ApiRequest(Protocol):
    """What dialgw uses of a `twisted.web.server.Request` (whose `IRequest`
    declares its methods without types)."""

    method: bytes
    path: bytes
    code: int
    content: IO[bytes] | None
    prepath: list[bytes] | None
    postpath: list[bytes] | None

    def getHeader(self, key: bytes) -> bytes | str | None: ...

    def setHeader(self, name: bytes, value: bytes) -> None: ...

    def setResponseCode(self, code: int, message: bytes | None = None) -> None: ...

    def write(self, data: bytes) -> None: ...

    def finish(self) -> None: ...

    def notifyFinish(self) -> Deferred[None]: ...


@attrs.define
class RequestContext:
    """One request's facts, filled in as the API learns them."""

    #: The X-Request-ID answered (the one sent, if valid, else a new one).
    request_id: str | None = None
    #: The authenticated app, if any.
    app_id: str | None = None
    #: The limit that refused a dial (429), for the rejection metrics.
    limit: str | None = None
    #: Whether the X-RateLimit-* headers are set already.
    ratelimit_headers: bool = False
    #: The body was over the limit and was not read (`dialgw.api.http`):
    #: 413 once the request has authenticated.
    body_too_large: bool = False


_contexts: WeakKeyDictionary[object, RequestContext] = WeakKeyDictionary()


def context_of(request: object) -> RequestContext:
    """The request's context, created empty on first use."""
    context = _contexts.get(request)
    if context is None:
        context = _contexts[request] = RequestContext()
    return context
