"""Dials admitted by this process whose session row is not committed yet.

``max_concurrent`` counts the app's live sessions in the store, but between
the limiter's yes and the commit of the session row a dial is in neither
place. Without this count two concurrent requests could both take an app's
last slot. Each admitted dial holds a ticket until its row is committed (it
is then counted by the store) or the request fails.

A request takes a `snapshot` before it counts the store's live sessions and
adds `in_flight_since` afterwards: a ticket released while the count ran
(its row perhaps committed too late to be counted) is still counted once.
That may count one dial twice for a moment, never zero times.

Across gateway nodes the bound holds through the count in the shared
database; only dials in this short window on other nodes are not seen.
"""

from __future__ import annotations

import itertools


class Reservations:
    def __init__(self) -> None:
        self._tickets = itertools.count(1)
        self._held: dict[str, set[int]] = {}

    def snapshot(self, app_id: str) -> frozenset[int]:
        return frozenset(self._held.get(app_id, ()))

    def in_flight_since(self, app_id: str, snapshot: frozenset[int]) -> int:
        """Dials held now or when ``snapshot`` was taken."""
        return len(snapshot | self._held.get(app_id, set()))

    def hold(self, app_id: str) -> int:
        ticket = next(self._tickets)
        self._held.setdefault(app_id, set()).add(ticket)
        return ticket

    def release(self, app_id: str, ticket: int) -> None:
        held = self._held.get(app_id)
        if held is not None:
            held.discard(ticket)
            if not held:
                del self._held[app_id]

    def held(self, app_id: str) -> int:
        return len(self._held.get(app_id, ()))
