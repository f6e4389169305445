"""Standard Webhooks 1.0 signatures (SPEC §3).

A secret is ``whsec_<base64 key>``. The signature of one attempt is
``v1,<base64 HMAC-SHA256(key, "<msg_id>.<timestamp>.<raw body>")>``; while an
app rotates its secret, both secrets sign and the header carries both values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError if malformed."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError("webhook secret must look like whsec_<base64 key>")
    encoded = secret[len(SECRET_PREFIX):]
    # Receivers' libraries accept the key with or without its padding.
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret key is not valid base64") from None
    if not key:
        raise ValueError("webhook secret key is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64 signature>`` of ``body`` sent as ``msg_id`` at ``timestamp``."""
    signed = f"{msg_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, current first."""
    if isinstance(secrets, str) or not secrets:
        raise ValueError("secrets must be a non-empty sequence of secrets")
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def webhook_headers(
    *,
    secrets: Sequence[str],
    event_id: str,
    event_name: str,
    timestamp: int,
    body: bytes,
    user_agent: str,
) -> dict[str, str]:
    """Every header of one delivery attempt of ``body``."""
    return {
        "Content-Type": "application/json",
        "User-Agent": user_agent,
        "webhook-id": event_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": signature_header(secrets, event_id, timestamp, body),
        "X-Dialgw-Event": event_name,
    }
