"""The JSON error envelope of every API failure (SPEC §1, Errors)."""

from __future__ import annotations

import attrs


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


UNAUTHORIZED = ApiError(401, "unauthorized", "missing or invalid X-App-ID / X-API-Key")
NOT_FOUND = ApiError(404, "not_found", "no such resource")
METHOD_NOT_ALLOWED = ApiError(405, "method_not_allowed", "method not allowed on this resource")
INTERNAL_ERROR = ApiError(500, "internal_error", "internal error; it was logged with the request id")
