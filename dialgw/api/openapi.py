"""The OpenAPI 3.0.3 document of the ``/api/v1`` API (SPEC §1), as Python data.

`SPEC` is what ``GET /api/v1/openapi.json`` serves; ``docs/openapi.yaml`` is
generated from it::

    python -m dialgw.api.openapi > docs/openapi.yaml

(PyYAML is needed for that command only, never at runtime.) A test keeps the
file equal to `SPEC`, and a schemathesis run against a live gateway keeps
`SPEC` equal to what the gateway does.

The patterns here are the gateway's own: `NUMBER_PATTERN` is
`dialgw.numbers`' regular expression, anchored; `SESSION_UUID_PATTERN` and
`REQUEST_ID_PATTERN` are `dialgw.ids`' shapes, anchored. The ``session_uuid`` path parameter is
any string on purpose: the API answers 404 for a malformed id, and the
document says so rather than claiming such a request cannot be made.
"""

from __future__ import annotations

from typing import Any

from dialgw import ids
from dialgw.api.http import BODY_DEADLINE_SEC, HEADERS_DEADLINE_SEC
from dialgw.api.validation import MAX_BODY_BYTES, MAX_METADATA_BYTES, RANGES
from dialgw.calls.machine import EVENT_FOR_STATUS, STATUSES

#: `dialgw.numbers._NUMBER`, anchored (JSON Schema patterns are searches).
NUMBER_PATTERN = r"^(0[23489][0-9]{7}|05[0-58][0-9]{7}|07[234679][0-9]{7})$"
SESSION_UUID_PATTERN = f"^{ids.SESSION_ID_PATTERN}$"
#: RFC 3339 UTC with milliseconds and a ``Z`` (`dialgw.timefmt.rfc3339`).
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$"
#: 1-255 printable ASCII characters. HTTP drops the blanks around a header
#: value, so a key that starts or ends with a space is not the key received.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"
#: What the gateway echoes; anything else sent is replaced by a new id.
REQUEST_ID_PATTERN = f"^{ids.REQUEST_ID_PATTERN}$"

#: Every ``error`` code, by the status that carries it.
ERROR_CODES: dict[int, list[str]] = {
    400: ["invalid_json", "missing_field", "invalid_field", "invalid_number", "out_of_range"],
    401: ["unauthorized"],
    403: ["cid_not_allowed"],
    404: ["not_found"],
    405: ["method_not_allowed"],
    408: ["request_timeout"],
    413: ["body_too_large"],
    415: ["unsupported_media_type"],
    422: ["idempotency_key_reused"],
    429: ["rate_limited"],
    500: ["internal_error"],
    503: ["no_fs_capacity"],
}
RATE_LIMITS = ["dials_per_sec", "max_concurrent", "cooldown"]
DELIVERY_STATES = ["pending", "delivered", "failed"]


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _headers(*names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Response headers; X-Request-ID is on every answer."""
    headers = {"X-Request-ID": _ref("headers", "X-Request-ID")}
    for name in names:
        headers[name] = _ref("headers", name + ("-required" if name in required else ""))
    return headers


def _error(description: str, status: int, *headers: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """An error answer: the envelope, its ``error`` narrowed to this status' codes."""
    schema = {
        "allOf": [
            _ref("schemas", "Error"),
            {"type": "object", "properties": {"error": {"type": "string", "enum": ERROR_CODES[status]}}},
        ]
    }
    return {
        "description": description,
        "headers": _headers(*headers, required=required),
        "content": _json(schema),
    }


_RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def _int_header(description: str, minimum: int, required: bool) -> dict[str, Any]:
    return {
        "description": description,
        "required": required,
        "schema": {"type": "string", "pattern": "^[0-9]+$" if minimum == 0 else "^[1-9][0-9]*$"},
    }


def _rate_headers() -> dict[str, Any]:
    texts = {
        "X-RateLimit-Limit": ("The app's bucket size (`burst`).", 0),
        "X-RateLimit-Remaining": ("Whole tokens left after this request.", 0),
        "X-RateLimit-Reset": ("Seconds until the bucket is full again.", 0),
    }
    headers: dict[str, Any] = {}
    for name, (text, minimum) in texts.items():
        headers[name] = _int_header(text + " On every POST /dial answer to an authenticated app.", minimum, False)
        headers[name + "-required"] = _int_header(text, minimum, True)
    return headers


_SESSION_PARAMETER = {
    "name": "session_uuid",
    "in": "path",
    "required": True,
    "description": (
        "A session id as the 202 of POST /api/v1/dial gave it (shape: "
        f"`{SESSION_UUID_PATTERN}`). Any other string, an unknown session and another "
        "app's session are all answered 404 `not_found`, with the same body."
    ),
    "schema": {"type": "string"},
}

_SESSION_ERRORS = {
    "401": _ref("responses", "Unauthorized"),
    "404": _ref("responses", "NotFound"),
    "500": _ref("responses", "InternalError"),
}


def _dial_operation() -> dict[str, Any]:
    limited = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
    return {
        "operationId": "dial",
        "summary": "Place an outbound call",
        "description": (
            "Checks run in this order, first failure wins: auth (401) -> body and fields "
            "(413, 415, 400) -> an Idempotency-Key replay (202 again, or 422) -> caller-ID "
            "allow-list (403) -> rate limits (429) -> capacity (503). Only a request that "
            "passes them all creates a session; a 429 or 503 stored nothing and placed no "
            "call, so it is safe to retry after Retry-After."
        ),
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": (
                    "1-255 printable ASCII characters. The same app repeating a key within 24 "
                    "hours gets the first 202 again (with `Idempotent-Replayed: true`) and no "
                    "second call; the same key with a different dial is 422. Only a 202 is "
                    "remembered."
                ),
                "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                           "pattern": IDEMPOTENCY_KEY_PATTERN},
            },
            _ref("parameters", "X-Request-ID"),
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("schemas", "DialRequest")}},
        },
        "responses": {
            "202": {
                "description": "Accepted: the session is stored and the originate is on its way.",
                "headers": {
                    **_headers("Location", "Idempotent-Replayed", *limited, required=("Location", *limited)),
                },
                "content": _json(_ref("schemas", "DialAccepted")),
                "links": {
                    "GetSession": {
                        "operationId": "getSession",
                        "parameters": {"session_uuid": "$response.body#/session_uuid"},
                    },
                    "CancelSession": {
                        "operationId": "cancelSession",
                        "parameters": {"session_uuid": "$response.body#/session_uuid"},
                    },
                    "SessionEvents": {
                        "operationId": "sessionEvents",
                        "parameters": {"session_uuid": "$response.body#/session_uuid"},
                    },
                },
            },
            "400": _error("The body or a field is invalid (`field` names it).", 400, *limited),
            "401": _ref("responses", "Unauthorized"),
            "403": _error("`from` is not on this app's caller-ID allow-list.", 403, *limited),
            "408": _error(
                f"The headers did not arrive within {HEADERS_DEADLINE_SEC:g} s of the request's first "
                f"byte, or the body within {BODY_DEADLINE_SEC:g} s of the headers; the connection is closed.",
                408,
            ),
            "413": _error(f"The body is over {MAX_BODY_BYTES // 1024} KiB; it was not read.", 413, *limited),
            "415": _error("Content-Type is not application/json (charset utf-8 optional).", 415, *limited),
            "422": _error("This Idempotency-Key was used with a different dial.", 422, *limited),
            "429": {
                "description": "Rate limited: nothing stored, no call placed.",
                "headers": _headers("Retry-After", *limited, required=("Retry-After", *limited)),
                "content": _json(_ref("schemas", "RateLimited")),
            },
            "500": _ref("responses", "InternalError"),
            "503": _error(
                "No FreeSWITCH node can take the call (or the gateway is shutting down): "
                "nothing stored, no call placed.",
                503, "Retry-After", *limited, required=("Retry-After",),
            ),
        },
    }


def _schemas() -> dict[str, Any]:
    number = {"type": "string", "pattern": NUMBER_PATTERN}
    timestamp = {"type": "string", "pattern": TIMESTAMP_PATTERN}
    status = {"type": "string", "enum": list(STATUSES)}
    session_uuid = {"type": "string", "pattern": SESSION_UUID_PATTERN}
    timeout_low, timeout_high, timeout_default = RANGES["timeout_sec"]
    duration_low, duration_high, duration_default = RANGES["max_duration_sec"]
    return {
        "Error": {
            "type": "object",
            "description": "Every error answer. `field` names the offending field or header on field errors.",
            "required": ["error", "message"],
            "additionalProperties": False,
            "properties": {
                "error": {"type": "string", "enum": [code for codes in ERROR_CODES.values() for code in codes]},
                "message": {"type": "string", "description": "For a human; never a stack trace."},
                "field": {"type": "string"},
            },
        },
        "RateLimited": {
            "type": "object",
            "description": "The 429 body: the error envelope plus which limit refused and for how long.",
            "required": ["error", "message", "retry_after_sec", "limit"],
            "additionalProperties": False,
            "properties": {
                "error": {"type": "string", "enum": ERROR_CODES[429]},
                "message": {"type": "string"},
                "retry_after_sec": {"type": "integer", "minimum": 1,
                                    "description": "Equal to the Retry-After header."},
                "limit": {"type": "string", "enum": RATE_LIMITS},
            },
        },
        "DialRequest": {
            "type": "object",
            "required": ["to", "from"],
            "additionalProperties": False,
            "properties": {
                "to": {
                    **number,
                    "description": (
                        "Israeli domestic number, digits only: landline 0[23489]+7 digits, mobile "
                        "050-055/058+7, VoIP 072 073 074 076 077 079+7."
                    ),
                    "example": "0527121102",
                },
                "from": {
                    **number,
                    "description": "Same format; must be on the app's caller-ID allow-list.",
                    "example": "0721234567",
                },
                "timeout_sec": {
                    "type": "integer", "minimum": timeout_low, "maximum": timeout_high,
                    "default": timeout_default, "description": "Ring timeout.",
                },
                "max_duration_sec": {
                    "type": "integer", "minimum": duration_low, "maximum": duration_high,
                    "default": duration_default, "description": "Longest call after answer.",
                },
                "metadata": {
                    "type": "object",
                    "description": (
                        f"Any JSON object of at most {MAX_METADATA_BYTES} bytes as compact JSON "
                        "(larger: 400 `out_of_range`); echoed as sent on GET and every webhook."
                    ),
                    "default": {},
                },
            },
        },
        "DialAccepted": {
            "type": "object",
            "required": ["session_uuid", "status"],
            "additionalProperties": False,
            "properties": {"session_uuid": session_uuid, "status": {"type": "string", "enum": ["dialing"]}},
        },
        "SessionStatus": {
            "type": "object",
            "required": ["session_uuid", "status"],
            "additionalProperties": False,
            "properties": {"session_uuid": session_uuid, "status": status},
        },
        "Session": {
            "type": "object",
            "required": ["session_uuid", "status", "started_at", "answered_at", "ended_at",
                         "hangup_cause", "to", "from", "metadata"],
            "additionalProperties": False,
            "properties": {
                "session_uuid": session_uuid,
                "status": status,
                "started_at": timestamp,
                "answered_at": _nullable(timestamp),
                "ended_at": _nullable(timestamp),
                "hangup_cause": _nullable({"type": "string", "description": "FreeSWITCH's cause name."}),
                "to": number,
                "from": number,
                "metadata": {"type": "object", "description": "As sent with the dial."},
            },
        },
        "SessionEvent": {
            "type": "object",
            "required": ["id", "event", "sequence", "status", "occurred_at", "delivery_state",
                         "attempts", "last_error", "next_attempt_at", "delivered_at"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "pattern": f"^{ids.EVENT_ID_PATTERN}$"},
                "event": {"type": "string", "enum": list(EVENT_FOR_STATUS.values())},
                "sequence": {"type": "integer", "minimum": 1},
                "status": status,
                "occurred_at": timestamp,
                "hangup_cause": _nullable({"type": "string", "description": "Only on `call.hangup`."}),
                "duration_sec": _nullable({"type": "integer", "minimum": 0,
                                           "description": "Only on `call.hangup`."}),
                "delivery_state": {"type": "string", "enum": DELIVERY_STATES},
                "attempts": {"type": "integer", "minimum": 0},
                "last_error": _nullable({"type": "string"}),
                "next_attempt_at": _nullable({**timestamp, "description": "Only while `pending`."}),
                "delivered_at": _nullable(timestamp),
            },
        },
        "SessionEvents": {
            "type": "object",
            "required": ["session_uuid", "events"],
            "additionalProperties": False,
            "properties": {
                "session_uuid": session_uuid,
                "events": {"type": "array", "items": _ref("schemas", "SessionEvent")},
            },
        },
    }


def _components() -> dict[str, Any]:
    return {
        "securitySchemes": {
            "AppId": {"type": "apiKey", "in": "header", "name": "X-App-ID",
                      "description": "The app's id (`dialgw-admin app create`)."},
            "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                       "description": "The app's key, shown once at creation."},
        },
        "parameters": {
            "X-Request-ID": {
                "name": "X-Request-ID",
                "in": "header",
                "required": False,
                "description": (
                    "Echoed in the answer and in every log line about the request when it is "
                    "1-128 printable ASCII characters without spaces; otherwise a new id is made."
                ),
                "schema": {"type": "string"},
            },
        },
        "headers": {
            "X-Request-ID": {
                "description": "The client's X-Request-ID if it sent a sane one, else a new id.",
                "required": True,
                "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
            },
            "Location": {"description": "`/api/v1/dial/{session_uuid}`.", "required": False,
                         "schema": {"type": "string", "pattern": "^/api/v1/dial/"}},
            "Location-required": {"description": "`/api/v1/dial/{session_uuid}`.", "required": True,
                                  "schema": {"type": "string", "pattern": "^/api/v1/dial/"}},
            "Idempotent-Replayed": {"description": "`true` on a replayed answer.", "required": False,
                                    "schema": {"type": "string", "enum": ["true"]}},
            "Retry-After": {"description": "Whole seconds, at least 1.", "required": False,
                            "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"}},
            "Retry-After-required": {"description": "Whole seconds, at least 1.", "required": True,
                                     "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"}},
            **_rate_headers(),
        },
        "responses": {
            "Unauthorized": _error(
                "X-App-ID or X-API-Key missing, unknown app, wrong key or disabled app: the same body in every case.",
                401,
            ),
            "NotFound": _error("Unknown session, malformed id or another app's session.", 404),
            "InternalError": _error("A bug; logged with the request id.", 500),
        },
        "schemas": _schemas(),
    }


def build() -> dict[str, Any]:
    """The whole document (a new object each call)."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "dialgw",
            "version": "1",
            "description": (
                "Outbound-call gateway for FreeSWITCH pools. Every answer is JSON and carries "
                "X-Request-ID; every error is `{\"error\", \"message\"[, \"field\"]}`."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"AppId": [], "ApiKey": []}],
        "paths": {
            "/api/v1/dial": {"post": _dial_operation()},
            "/api/v1/dial/{session_uuid}": {
                "parameters": [_SESSION_PARAMETER],
                "get": {
                    "operationId": "getSession",
                    "summary": "A session's status",
                    "parameters": [_ref("parameters", "X-Request-ID")],
                    "responses": {
                        "200": {"description": "The session.", "headers": _headers(),
                                "content": _json(_ref("schemas", "Session"))},
                        **_SESSION_ERRORS,
                    },
                },
                "delete": {
                    "operationId": "cancelSession",
                    "summary": "Hang the call up",
                    "description": (
                        "Cancels the call while dialing/ringing (`ORIGINATOR_CANCEL`) or ends it "
                        "after answer (`NORMAL_CLEARING`). The session stays readable."
                    ),
                    "parameters": [_ref("parameters", "X-Request-ID")],
                    "responses": {
                        "200": {"description": "Already ended: nothing changed; the final status.",
                                "headers": _headers(), "content": _json(_ref("schemas", "SessionStatus"))},
                        "202": {"description": "Live: the hangup is on its way; the status now.",
                                "headers": _headers(), "content": _json(_ref("schemas", "SessionStatus"))},
                        **_SESSION_ERRORS,
                    },
                },
            },
            "/api/v1/dial/{session_uuid}/events": {
                "parameters": [_SESSION_PARAMETER],
                "get": {
                    "operationId": "sessionEvents",
                    "summary": "A session's events and their webhook delivery",
                    "parameters": [_ref("parameters", "X-Request-ID")],
                    "responses": {
                        "200": {"description": "Every status change in order.", "headers": _headers(),
                                "content": _json(_ref("schemas", "SessionEvents"))},
                        **_SESSION_ERRORS,
                    },
                },
            },
            "/api/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {"description": "The OpenAPI document.", "headers": _headers(),
                                "content": _json({"type": "object"})},
                    },
                },
            },
        },
        "components": _components(),
    }


SPEC: dict[str, Any] = build()


def main() -> None:
    import sys

    import yaml  # PyYAML: a dev-only dependency (the test extra)

    sys.stdout.write("# Generated by `python -m dialgw.api.openapi`; do not edit by hand.\n")
    sys.stdout.write(yaml.safe_dump(build(), sort_keys=False, allow_unicode=True, width=100))


if __name__ == "__main__":
    main()
