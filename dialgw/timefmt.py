"""Timestamps on the wire: RFC 3339 UTC with milliseconds and a ``Z``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def rfc3339(epoch: float | None) -> str | None:
    """``1778070896.123`` -> ``"2026-05-06T12:34:56.123Z"``; None stays None."""
    if epoch is None:
        return None
    # Round to whole milliseconds first so .9996 becomes the next second,
    # never ".1000".
    millis = int(round(epoch * 1000))
    moment = _EPOCH + timedelta(milliseconds=millis)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"
