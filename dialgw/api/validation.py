"""Validation of a dial request (SPEC §1, POST /api/v1/dial).

Pure functions: bytes and headers in, a `DialRequest` or an `ApiError` out.
Checks run in a fixed order, first failure wins, so clients always get the
same answer for the same mistake.
"""

from __future__ import annotations

import hashlib
import json
import math
import re

import attrs

from dialgw.api.errors import ApiError
from dialgw.numbers import is_valid_number

MAX_BODY_BYTES = 64 * 1024
MAX_METADATA_BYTES = 4 * 1024

FIELDS = ("to", "from", "timeout_sec", "max_duration_sec", "metadata")
RANGES = {"timeout_sec": (1, 300, 30), "max_duration_sec": (1, 14400, 3600)}

_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")
_MEDIA_TYPE = re.compile(
    r"\s*application/json\s*(;\s*charset\s*=\s*\"?utf-8\"?\s*)?", re.IGNORECASE | re.ASCII
)


@attrs.frozen
class DialRequest:
    to: str
    from_: str
    timeout_sec: int
    max_duration_sec: int
    metadata_json: str
    request_hash: str


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _unique_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _invalid_json(message: str) -> ApiError:
    return ApiError(400, "invalid_json", message)


def check_content_type(content_type: str | None) -> None:
    """415 unless the body is declared as JSON (UTF-8, charset optional)."""
    if content_type is None or _MEDIA_TYPE.fullmatch(content_type) is None:
        raise ApiError(
            415, "unsupported_media_type", "Content-Type must be application/json"
        )


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if _IDEMPOTENCY_KEY.fullmatch(key) is None:
        raise ApiError(
            400,
            "invalid_field",
            "Idempotency-Key must be 1-255 printable ASCII characters",
            field="Idempotency-Key",
        )
    return key


def parse_body(raw: bytes) -> dict[str, object]:
    """The request body as a JSON object, or 400 ``invalid_json``."""
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"body is over {MAX_BODY_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid_json("body is not valid UTF-8") from None
    try:
        body = json.loads(
            text,
            object_pairs_hook=_unique_object,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except (ValueError, RecursionError):
        raise _invalid_json("body is not a valid JSON object") from None
    if not isinstance(body, dict):
        raise _invalid_json("body must be a JSON object")
    if b"\\u" in raw:
        # JSON may spell lone UTF-16 surrogates ("\ud800"), which are not
        # text: nothing could store or echo them.
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _invalid_json("body contains an unpaired surrogate escape") from None
    return body


def _integer(body: dict[str, object], name: str) -> int:
    low, high, default = RANGES[name]
    if name not in body:
        return default
    value = body[name]
    # bool is an int subclass in Python; JSON true is not an integer.
    if type(value) is not int:
        raise ApiError(400, "invalid_field", f"{name} must be an integer", field=name)
    if not low <= value <= high:
        raise ApiError(
            400, "out_of_range", f"{name} must be between {low} and {high}", field=name
        )
    return value


def _number(body: dict[str, object], name: str) -> str:
    if name not in body:
        raise ApiError(400, "missing_field", f"{name} is required", field=name)
    value = body[name]
    if not isinstance(value, str):
        raise ApiError(400, "invalid_field", f"{name} must be a string", field=name)
    if not is_valid_number(value):
        raise ApiError(
            400,
            "invalid_number",
            f"{name} must be an Israeli domestic number, digits only (e.g. 0527121102)",
            field=name,
        )
    return value


def _metadata(body: dict[str, object]) -> str:
    value = body.get("metadata", {})
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_field", "metadata must be a JSON object", field="metadata")
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode("utf-8")) > MAX_METADATA_BYTES:
        raise ApiError(
            400,
            "out_of_range",
            f"metadata must be at most {MAX_METADATA_BYTES} bytes as JSON",
            field="metadata",
        )
    return text


def validate_dial(raw: bytes) -> DialRequest:
    """Validate a POST /dial body (Content-Type already checked)."""
    body = parse_body(raw)
    for name in body:
        if name not in FIELDS:
            raise ApiError(400, "invalid_field", f"unknown field {name!r}", field=name)
    to = _number(body, "to")
    from_ = _number(body, "from")
    timeout_sec = _integer(body, "timeout_sec")
    max_duration_sec = _integer(body, "max_duration_sec")
    metadata_json = _metadata(body)
    # The hash is over the effective request: defaults filled in, key order
    # of metadata ignored, so a retry that spells the same dial differently
    # is still recognised as the same dial.
    canonical = json.dumps(
        [to, from_, timeout_sec, max_duration_sec, body.get("metadata", {})],
        sort_keys=True,
        separators=(",", ":"),
    )
    return DialRequest(
        to=to,
        from_=from_,
        timeout_sec=timeout_sec,
        max_duration_sec=max_duration_sec,
        metadata_json=metadata_json,
        request_hash=hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
    )
