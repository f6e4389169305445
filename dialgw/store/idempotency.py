"""Idempotency keys: the first 202 answer to an app's key, kept for 24 hours."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from dialgw.store.base import StoreBase
from dialgw.store.dbapi import Cursor
from dialgw.store.records import IDEMPOTENCY_COLUMNS, IDEMPOTENCY_TTL_SEC, IdempotencyRecord


def _cutoff(now: float) -> float:
    """A key stored at or before this time is forgotten at ``now``."""
    return now - IDEMPOTENCY_TTL_SEC


#: Rows still remembered, and rows forgotten, given `_cutoff`.
_LIVE = "created_at > ?"
_EXPIRED = "created_at <= ?"


class IdempotencyStore(StoreBase):
    """Each app's Idempotency-Keys and the answer first given to each."""

    def _live_idempotency(self, txn: Cursor, app_id: str, key: str, now: float) -> IdempotencyRecord | None:
        """The app's record of ``key`` if not expired at ``now``."""
        row = self._one(
            txn,
            f"SELECT {', '.join(IDEMPOTENCY_COLUMNS)} FROM idempotency_keys "
            f"WHERE app_id = ? AND idempotency_key = ? AND {_LIVE}",
            (app_id, key, _cutoff(now)),
        )
        return IdempotencyRecord.from_row(row) if row is not None else None

    def _delete_expired_idempotency(self, txn: Cursor, app_id: str, key: str, now: float) -> None:
        """Forget the app's record of ``key`` if it has expired at ``now``.

        Only an expired one: a record another transaction stored since
        this one read must stay, and win.
        """
        self._execute(
            txn,
            f"DELETE FROM idempotency_keys WHERE app_id = ? AND idempotency_key = ? AND {_EXPIRED}",
            (app_id, key, _cutoff(now)),
        )

    def _insert_idempotency(self, txn: Cursor, record: IdempotencyRecord) -> bool:
        """Store ``record``; False (and nothing written) if its key is held.

        ``DO NOTHING`` rather than a unique violation, which on PostgreSQL
        would abort the whole transaction.
        """
        self._insert(txn, "idempotency_keys", record.to_row(), " ON CONFLICT (app_id, idempotency_key) DO NOTHING")
        return txn.rowcount == 1

    def find_idempotency(self, app_id: str, key: str, now: float) -> Deferred[IdempotencyRecord | None]:
        """The record for this app's key if stored less than 24 hours before ``now``."""
        return self.run_interaction("find_idempotency", self._live_idempotency, app_id, key, now, write=False)

    def prune_idempotency(self, now: float) -> Deferred[int]:
        """Delete keys older than 24 hours; fire with how many went."""

        def prune(txn: Cursor) -> int:
            self._execute(txn, f"DELETE FROM idempotency_keys WHERE {_EXPIRED}", (_cutoff(now),))
            return txn.rowcount

        return self.run_interaction("prune_idempotency", prune, write=True)
