"""Webhook retry rules (SPEC §3): pure functions, no clock, no sockets.

Times are epoch seconds passed in by the caller; randomness comes from the
``random.Random`` passed in, so tests can seed it.
"""

from __future__ import annotations

import random
import re
from datetime import UTC
from email.utils import parsedate_to_datetime

DELIVERED = "delivered"
RETRY = "retry"
FAILED = "failed"

#: Statuses worth another try besides 5xx: request timeout, too many requests.
_RETRYABLE = frozenset({408, 429})

#: A Retry-After is honoured up to this many seconds.
MAX_RETRY_AFTER_SEC = 3600.0

#: Never retry sooner than this, whatever a Retry-After says.
MIN_DELAY_SEC = 1.0

_DELTA_SECONDS = re.compile(r"[0-9]+", re.ASCII)

# 2.0 ** 512 times any sane base stays finite; beyond it the cap rules anyway.
_MAX_EXPONENT = 512


def classify(status: int | None) -> str:
    """What an attempt's outcome means: ``delivered``, ``retry`` or ``failed``.

    ``None`` stands for no answer (connection error or timeout) and is
    retried, as are 408, 429 and 5xx. Every other status fails the event at
    once: 4xx, but also 1xx and 3xx, because redirects are not followed (a
    receiver that moved must update its ``webhook_url``).
    """
    if status is None:
        return RETRY
    if 200 <= status <= 299:
        return DELIVERED
    if status in _RETRYABLE or 500 <= status <= 599:
        return RETRY
    return FAILED


def backoff_bounds(attempts: int, base: float = 1.0, cap: float = 300.0) -> tuple[float, float]:
    """The (low, high) range of ``backoff_delay`` after ``attempts`` failures."""
    if attempts < 1:
        raise ValueError(f"attempts counts failed attempts from 1, got {attempts}")
    high = min(cap, base * 2.0 ** min(attempts, _MAX_EXPONENT))
    return (base, max(base, high))


def backoff_delay(
    attempts: int, rng: random.Random, base: float = 1.0, cap: float = 300.0
) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1-based).

    Full jitter over ``[0, min(cap, base * 2 ** attempts)]`` with a floor of
    ``base``: 1-2 s after the first failure, 1-4 s after the second, ...,
    never more than ``cap``.
    """
    low, high = backoff_bounds(attempts, base, cap)
    return min(high, max(low, rng.uniform(0.0, high)))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """A ``Retry-After`` value as seconds from ``now``, clamped to [0, 3600].

    Either delta-seconds (a non-negative integer) or an HTTP-date; anything
    else (including a missing header) is None.
    """
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        seconds = float(min(int(value), int(MAX_RETRY_AFTER_SEC)))
    else:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if moment.tzinfo is None:
            # "-0000" means UTC with no claim about local time (RFC 5322).
            moment = moment.replace(tzinfo=UTC)
        try:
            seconds = moment.timestamp() - now
        except (OverflowError, ValueError, OSError):
            return None
    return min(MAX_RETRY_AFTER_SEC, max(0.0, seconds))


def next_attempt(
    *,
    attempts: int,
    first_attempt_at: float,
    created_at: float,
    now: float,
    max_attempts: int,
    max_age_sec: float,
    retry_after: float | None,
    rng: random.Random,
) -> float | None:
    """When to try again after the ``attempts``-th attempt failed retryably.

    None means the event has failed for good: ``max_attempts`` are spent, or
    the next attempt would come after ``created_at + max_age_sec``. A
    ``retry_after`` (seconds, see ``parse_retry_after``) replaces the backoff,
    but never with less than one second.

    ``first_attempt_at`` is accepted for the sender's bookkeeping; the age
    limit counts from ``created_at``, as an event that waited behind its
    predecessors has been late for its receiver since then.
    """
    if attempts >= max_attempts:
        return None
    if retry_after is not None:
        delay = max(retry_after, MIN_DELAY_SEC)
    else:
        delay = backoff_delay(attempts, rng)
    at = now + delay
    if at > created_at + max_age_sec:
        return None
    return at
