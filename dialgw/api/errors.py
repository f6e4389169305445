"""The JSON error envelope of every API failure (SPEC §1, Errors), built here only."""

from __future__ import annotations

import json
from typing import Any

import attrs


def json_body(obj: Any) -> bytes:
    """Compact UTF-8 JSON, the one encoding of every response body."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


#: Reason phrases Twisted does not know (it would send "Unknown Status").
REASONS = {
    408: b"Request Timeout",
    413: b"Payload Too Large",
    422: b"Unprocessable Content",
    429: b"Too Many Requests",
}


@attrs.frozen
class ApiError(Exception):
    """An error answer: ``{"error": code, "message": ..., ["field": ...]}``."""

    status: int
    code: str
    message: str
    field: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    extra: tuple[tuple[str, object], ...] = ()

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        return body

    def encoded(self) -> bytes:
        """The response body: `body` as `json_body`."""
        return json_body(self.body())


# Every answer below is made afresh for each request, never a module-level
# instance: raising the same exception object again chains each new
# traceback (and the frames, requests included, that it holds) onto it.


def unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "missing or invalid X-App-ID / X-API-Key")


def not_found() -> ApiError:
    return ApiError(404, "not_found", "no such resource")


def method_not_allowed() -> ApiError:
    return ApiError(405, "method_not_allowed", "method not allowed on this resource")


def request_timeout(what: str = "body") -> ApiError:
    """408: the request's ``what`` (``body`` or ``headers``) was too slow."""
    return ApiError(408, "request_timeout", f"the request {what} did not arrive in time")


def body_too_large() -> ApiError:
    return ApiError(413, "body_too_large", "body is over 64 KiB")


def internal_error() -> ApiError:
    return ApiError(500, "internal_error", "internal error; it was logged with the request id")


def shutting_down() -> ApiError:
    return ApiError(503, "no_fs_capacity", "the gateway is shutting down", headers=(("Retry-After", "5"),))


def starting() -> ApiError:
    return ApiError(503, "no_fs_capacity", "the gateway is starting", headers=(("Retry-After", "1"),))
