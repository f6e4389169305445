"""The one interface every limiter backend provides."""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred

from dialgw.limits.policy import AppLimits, Decision


class Limiter(Protocol):
    """Per-app dial limits (SPEC §4): token bucket, concurrency cap, cooldown."""

    @property
    def degraded(self) -> bool:
        """True while a shared backend is unreachable and a local one stands in."""

    def start(self) -> Deferred[None]:
        """Start using the backend; fires when it answers or is known not to (never fails)."""

    def check(self, app_id: str, limits: AppLimits, live_sessions: int) -> Deferred[Decision]:
        """Decide one dial of ``app_id``, which has ``live_sessions`` not ended.

        Allowed: a token is taken. Refused: nothing is taken and the refusal
        counts toward a cooldown (unless the app is in one already). Never fails.
        """

    def peek(self, app_id: str, limits: AppLimits) -> Deferred[Decision]:
        """The bucket as it is now, for headers: takes nothing, counts nothing. Never fails."""

    def close(self) -> Deferred[None]:
        """Release connections; the limiter is not used afterwards."""
