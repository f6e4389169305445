"""Per-app dial limits (SPEC §4): token bucket, ``max_concurrent``, cooldown.

One interface (`Limiter`), two backends: `MemoryLimiter` (one node) and
`RedisLimiter` (shared by every node, a `MemoryLimiter` standing in while
Redis cannot be reached).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime

from dialgw.config import RateLimitSettings, RedisSettings
from dialgw.limits.base import Limiter
from dialgw.limits.memory import MemoryLimiter
from dialgw.limits.policy import COOLDOWN, DIALS_PER_SEC, MAX_CONCURRENT, AppLimits, Decision, limits_for
from dialgw.limits.redis_limiter import RedisLimiter
from dialgw.limits.reservations import Reservations

__all__ = [
    "COOLDOWN",
    "DIALS_PER_SEC",
    "MAX_CONCURRENT",
    "AppLimits",
    "Decision",
    "Limiter",
    "MemoryLimiter",
    "RedisLimiter",
    "Reservations",
    "limits_for",
    "make_limiter",
]


def make_limiter(ratelimit: RateLimitSettings, redis: RedisSettings, clock: IReactorTime,
                 reactor: Any = None) -> Limiter:
    """The limiter ``[ratelimit] backend`` names."""
    if ratelimit.backend == "redis":
        return RedisLimiter(redis.url, clock, fallback=MemoryLimiter(clock), reactor=reactor)
    return MemoryLimiter(clock)
