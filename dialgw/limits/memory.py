"""The in-process limiter: one node's buckets in a dict (``[ratelimit] backend = memory``).

It is also the Redis limiter's fallback while Redis cannot be reached.
"""

from __future__ import annotations

from collections import deque

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from dialgw.limits.policy import (
    COOLDOWN,
    DIALS_PER_SEC,
    MAX_CONCURRENT,
    AppLimits,
    Decision,
    has_token,
    refill,
    remaining_of,
    reset_of,
    retry_after_of,
    seconds_until_token,
)


@attrs.define
class _AppState:
    tokens: float
    updated_at: float
    #: Times of the latest refusals (at most ``cooldown_after + 1``).
    refusals: deque[float] = attrs.field(factory=deque)
    cooldown_until: float = 0.0


class MemoryLimiter:
    """Token bucket, concurrency cap and cooldown per app, in memory.

    Time is the injected clock's. Everything happens synchronously; the
    Deferreds it returns have already fired.
    """

    degraded = False

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._apps: dict[str, _AppState] = {}

    def start(self) -> Deferred[None]:
        return succeed(None)

    def check(self, app_id: str, limits: AppLimits, live_sessions: int) -> Deferred[Decision]:
        return succeed(self.decide(app_id, limits, live_sessions, take=True))

    def peek(self, app_id: str, limits: AppLimits) -> Deferred[Decision]:
        return succeed(self.decide(app_id, limits, 0, take=False))

    def close(self) -> Deferred[None]:
        return succeed(None)

    def decide(self, app_id: str, limits: AppLimits, live_sessions: int, take: bool) -> Decision:
        """The decision now; with ``take``, a dial: a token taken or a refusal counted."""
        now = self._clock.seconds()
        state = self._apps.get(app_id)
        if state is None:
            state = _AppState(tokens=float(limits.burst), updated_at=now)
        tokens = refill(state.tokens, state.updated_at, now, limits)

        def answer(limit: str | None, wait: float = 0.0) -> Decision:
            return Decision(
                allowed=limit is None,
                limit=limit,
                retry_after=0 if limit is None else retry_after_of(wait),
                header_limit=limits.burst,
                remaining=remaining_of(tokens),
                reset=reset_of(tokens, limits),
            )

        if state.cooldown_until > now:
            # Refusals during a cooldown neither extend it nor count toward the next.
            return answer(COOLDOWN, max(state.cooldown_until - now, seconds_until_token(tokens, limits)))
        if take and live_sessions >= limits.max_concurrent:
            limit: str | None = MAX_CONCURRENT
        elif not has_token(tokens):
            limit = DIALS_PER_SEC
        else:
            limit = None
        if not take:
            return answer(limit, seconds_until_token(tokens, limits))

        self._apps[app_id] = state
        if limit is None:
            tokens -= 1.0
            state.tokens, state.updated_at = tokens, now
            return answer(None)
        # A refusal takes no token; the bucket as refilled up to now is the same bucket.
        state.tokens, state.updated_at = tokens, now
        refusals = state.refusals
        refusals.append(now)
        while len(refusals) > limits.cooldown_after + 1:
            refusals.popleft()
        if len(refusals) > limits.cooldown_after and now - refusals[0] < limits.cooldown_window_sec:
            state.cooldown_until = now + limits.cooldown_sec
            refusals.clear()
            return answer(COOLDOWN, max(float(limits.cooldown_sec), seconds_until_token(tokens, limits)))
        return answer(limit, seconds_until_token(tokens, limits))
