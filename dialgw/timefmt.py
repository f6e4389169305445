"""Timestamps on the wire: RFC 3339 UTC with milliseconds and a ``Z``."""

from __future__ import annotations

import time


def rfc3339(epoch: float | None) -> str | None:
    """``1778070896.123`` -> ``"2026-05-06T12:34:56.123Z"``; None stays None."""
    if epoch is None:
        return None
    # Round to whole milliseconds first so .9996 becomes the next second,
    # never ".1000". (time.gmtime and %-formatting: several times cheaper
    # than datetime + strftime, and this runs for every GET and webhook.)
    seconds, millis = divmod(int(round(epoch * 1000)), 1000)
    t = time.gmtime(seconds)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
        t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, millis
    )
