"""Session events, which are the webhook outbox: claims with leases, attempts."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from dialgw.calls.machine import EVENT_FOR_STATUS
from dialgw.ids import new_event_id
from dialgw.store.base import StoreBase
from dialgw.store.dbapi import Cursor
from dialgw.store.records import (
    EVENT_COLUMNS,
    AttemptResult,
    Delivery,
    SessionEvent,
    signing_secrets,
)

#: An event's columns, then what its webhook needs of its session and app.
_DELIVERY_COLUMNS = ", ".join(f"e.{name}" for name in EVENT_COLUMNS) + (
    ", s.app_id, s.to_number, s.from_number, s.metadata_json, a.webhook_url, a.webhook_secret, "
    "a.previous_webhook_secret, a.previous_secret_expires_at"
)
#: The delivery state an attempt's outcome leaves its event in.
_DELIVERY_STATE = {"delivered": "delivered", "retry": "pending", "failed": "failed"}

#: ``(attempt, attempted_at, status_code, error, outcome)`` of one webhook attempt.
Attempt = tuple[int, float, int | None, str | None, str]
_ATTEMPT_COLUMNS = ("attempt", "attempted_at", "status_code", "error", "outcome")


class EventsStore(StoreBase):
    """A session's events, each a webhook waiting for (or past) delivery."""

    def _insert_event(self, txn: Cursor, session_uuid: str, sequence: int, status: str, at: float,
                      hangup_cause: str | None, duration_sec: int | None) -> SessionEvent:
        """Write the event announcing ``status``, its webhook due at once."""
        event = SessionEvent(
            event_id=new_event_id(),
            session_uuid=session_uuid,
            sequence=sequence,
            event=EVENT_FOR_STATUS[status],
            status=status,
            occurred_at=at,
            hangup_cause=hangup_cause,
            duration_sec=duration_sec,
            delivery_state="pending",
            attempts=0,
            last_error=None,
            next_attempt_at=at,
            delivered_at=None,
        )
        self._insert(txn, "session_events", {name: getattr(event, name) for name in EVENT_COLUMNS})
        return event

    def _next_sequence(self, txn: Cursor, session_uuid: str) -> int:
        """The sequence number the session's next event takes."""
        row = self._one(txn, "SELECT MAX(sequence) AS last FROM session_events WHERE session_uuid = ?",
                        (session_uuid,))
        return (row["last"] or 0) + 1 if row is not None else 1

    def session_events(self, session_uuid: str) -> Deferred[list[SessionEvent]]:
        """The session's events in sequence order."""

        def events(txn: Cursor) -> list[SessionEvent]:
            rows = self._all(
                txn,
                f"SELECT {', '.join(EVENT_COLUMNS)} FROM session_events WHERE session_uuid = ? ORDER BY sequence",
                (session_uuid,),
            )
            return [SessionEvent.from_row(row) for row in rows]

        return self.run_interaction("session_events", events, write=False)

    def claim_due_events(self, now: float, limit: int, lease_until: float) -> Deferred[list[Delivery]]:
        """Claim up to ``limit`` events whose webhook is due, oldest due first.

        Only the first undelivered event of each session is due, so a
        session's webhooks go out in order. A claimed event's next attempt
        moves to ``lease_until``: if the gateway dies before recording the
        attempt, the event comes due again then, with the same id.

        Several gateway nodes may claim at once (PostgreSQL): each event
        row is locked while claimed and rows another node holds are
        skipped, so no two claims share an event.
        """

        def claim(txn: Cursor) -> list[Delivery]:
            rows = self._all(
                txn,
                f"SELECT {_DELIVERY_COLUMNS} FROM session_events e "
                "JOIN sessions s ON s.session_uuid = e.session_uuid "
                "JOIN apps a ON a.app_id = s.app_id "
                "WHERE e.delivery_state = 'pending' AND e.next_attempt_at <= ? "
                "AND NOT EXISTS (SELECT 1 FROM session_events p WHERE p.session_uuid = e.session_uuid "
                "AND p.sequence < e.sequence AND p.delivery_state = 'pending') "
                "ORDER BY e.next_attempt_at LIMIT ?" + self._dialect.skip_locked("e"),
                (now, limit),
            )
            deliveries = []
            for row in rows:
                event = SessionEvent.from_row(row)
                secrets_now = signing_secrets(row["webhook_secret"], row["previous_webhook_secret"],
                                              row["previous_secret_expires_at"], now)
                deliveries.append(
                    Delivery(event, row["app_id"], row["webhook_url"], secrets_now, row["to_number"],
                             row["from_number"], row["metadata_json"])
                )
                self._execute(
                    txn,
                    "UPDATE session_events SET next_attempt_at = ? WHERE event_id = ?",
                    (lease_until, event.event_id),
                )
            return deliveries

        return self.run_interaction("claim_due_events", claim, write=True)

    def record_attempts(self, results: list[AttemptResult]) -> Deferred[None]:
        """Record the results of several attempts in one transaction."""

        def record(txn: Cursor) -> None:
            # Update first: the row lock it takes makes the attempt number
            # ours even if another node records on the same event, and a
            # fixed order (by event id) keeps two batches from deadlocking.
            for result in sorted(results, key=lambda r: r.event_id):
                self._execute(
                    txn,
                    "UPDATE session_events SET attempts = attempts + 1, delivery_state = ?, last_error = ?, "
                    "next_attempt_at = ?, delivered_at = ? WHERE event_id = ?",
                    (_DELIVERY_STATE[result.outcome], result.error, result.next_attempt_at,
                     result.attempted_at if result.outcome == "delivered" else None, result.event_id),
                )
                if txn.rowcount != 1:
                    continue  # the app (and its sessions) was deleted meanwhile
                row = self._one(
                    txn, "SELECT attempts FROM session_events WHERE event_id = ?", (result.event_id,)
                )
                assert row is not None
                self._insert(txn, "webhook_attempts", {
                    "event_id": result.event_id,
                    "attempt": row["attempts"],
                    "attempted_at": result.attempted_at,
                    "status_code": result.status_code,
                    "error": result.error,
                    "outcome": result.outcome,
                })

        return self.run_interaction("record_attempts", record, write=True)

    def webhook_attempts(self, event_id: str) -> Deferred[list[Attempt]]:
        """``(attempt, attempted_at, status_code, error, outcome)`` of an event, in order."""

        def attempts(txn: Cursor) -> list[Attempt]:
            rows = self._all(
                txn,
                f"SELECT {', '.join(_ATTEMPT_COLUMNS)} FROM webhook_attempts WHERE event_id = ? ORDER BY attempt",
                (event_id,),
            )
            return [(row["attempt"], row["attempted_at"], row["status_code"], row["error"], row["outcome"])
                    for row in rows]

        return self.run_interaction("webhook_attempts", attempts, write=False)

    def count_pending_events(self) -> Deferred[int]:
        """How many webhooks wait for delivery (the outbox backlog)."""

        def count(txn: Cursor) -> int:
            row = self._one(txn, "SELECT COUNT(*) AS pending FROM session_events WHERE delivery_state = 'pending'")
            return int(row["pending"]) if row else 0

        return self.run_interaction("count_pending_events", count, write=False)
