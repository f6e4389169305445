"""What the limits of an app are, and what a limiter answers (SPEC §4).

The arithmetic every backend shares lives here: the token bucket, the
Retry-After and ``X-RateLimit-*`` values. The memory backend runs these
functions; the Redis backend's Lua script is a line-by-line mirror of them
(and the same table of tests runs against both).
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from dialgw.config import RateLimitSettings

#: The refusal reasons, as the 429 body's ``limit`` says them.
DIALS_PER_SEC = "dials_per_sec"
MAX_CONCURRENT = "max_concurrent"
COOLDOWN = "cooldown"

#: Float slack for comparisons and roundings: clocks are floats, so a bucket
#: that should hold exactly 1 token may hold 0.9999999999. One microsecond of
#: tolerance is far below anything a client can observe.
EPSILON = 1e-6


@attrs.frozen
class AppLimits:
    """One app's effective limits: its overrides, else the ``[ratelimit]`` defaults."""

    dials_per_sec: float
    burst: int
    max_concurrent: int
    cooldown_after: int
    cooldown_window_sec: float
    cooldown_sec: float


def limits_for(app: Any, settings: RateLimitSettings) -> AppLimits:
    """The limits that apply to ``app`` (an `App`; None overrides mean the default)."""
    return AppLimits(
        dials_per_sec=app.dials_per_sec if app.dials_per_sec is not None else settings.dials_per_sec,
        burst=app.burst if app.burst is not None else settings.burst,
        max_concurrent=app.max_concurrent if app.max_concurrent is not None else settings.max_concurrent,
        cooldown_after=settings.cooldown_after,
        cooldown_window_sec=settings.cooldown_window_sec,
        cooldown_sec=settings.cooldown_sec,
    )


@attrs.frozen
class Decision:
    """A limiter's answer for one dial (or a peek at the bucket).

    ``retry_after`` is 0 when allowed, else the whole seconds (at least 1)
    until a dial would succeed: the next token, or the end of the cooldown.
    ``header_limit``, ``remaining`` and ``reset`` are the ``X-RateLimit-*``
    values: the bucket size, the whole tokens left after this dial, and the
    seconds until the bucket is full again.
    """

    allowed: bool
    limit: str | None
    retry_after: int
    header_limit: int
    remaining: int
    reset: int

    def headers(self) -> list[tuple[str, str]]:
        """The ``X-RateLimit-*`` headers of a POST /dial answer."""
        return [
            ("X-RateLimit-Limit", str(self.header_limit)),
            ("X-RateLimit-Remaining", str(self.remaining)),
            ("X-RateLimit-Reset", str(self.reset)),
        ]


def refill(tokens: float, updated_at: float, now: float, limits: AppLimits) -> float:
    """Tokens in the bucket at ``now``; a bucket never goes past ``burst``."""
    elapsed = max(0.0, now - updated_at)
    return min(float(limits.burst), tokens + elapsed * limits.dials_per_sec)


def remaining_of(tokens: float) -> int:
    return max(0, math.floor(tokens + EPSILON))


def reset_of(tokens: float, limits: AppLimits) -> int:
    """Whole seconds until the bucket is full."""
    return max(0, math.ceil((limits.burst - tokens) / limits.dials_per_sec - EPSILON))


def seconds_until_token(tokens: float, limits: AppLimits) -> float:
    return max(0.0, (1.0 - tokens) / limits.dials_per_sec)


def retry_after_of(seconds: float) -> int:
    """A Retry-After: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(seconds - EPSILON))


def has_token(tokens: float) -> bool:
    return tokens + EPSILON >= 1.0
