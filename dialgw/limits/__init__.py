"""Per-app dial limits (SPEC §4): token bucket, ``max_concurrent``, cooldown.

One interface (`Limiter`), two backends: `MemoryLimiter` (one node) and
`RedisLimiter` (shared by every node, a `MemoryLimiter` standing in while
Redis cannot be reached).
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from dialgw.config import RateLimitSettings
from dialgw.limits.base import Limiter
from dialgw.limits.memory import MemoryLimiter
from dialgw.limits.policy import COOLDOWN, DIALS_PER_SEC, MAX_CONCURRENT, AppLimits, Decision, limits_for
from dialgw.limits.redis_connection import RedisConnection
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
    "RedisConnection",
    "RedisLimiter",
    "Reservations",
    "limits_for",
    "make_limiter",
]


def make_limiter(ratelimit: RateLimitSettings, redis: RedisConnection | None, clock: IReactorTime) -> Limiter:
    """The limiter ``[ratelimit] backend`` names (``redis``: over ``redis``, which must be given)."""
    if ratelimit.backend == "redis":
        if redis is None:
            raise ValueError("[ratelimit] backend = redis needs the Redis connection")
        return RedisLimiter(redis, fallback=MemoryLimiter(clock))
    return MemoryLimiter(clock)
