"""Sessions: creating one, its forward-only status changes, live sessions, adoption."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from dialgw.calls.machine import DIALING, ENDED, LIVE_STATUSES, STATUSES, is_forward
from dialgw.store import apps
from dialgw.store.apps import AppsStore
from dialgw.store.dbapi import Cursor
from dialgw.store.events import EventsStore
from dialgw.store.idempotency import IdempotencyStore
from dialgw.store.records import SESSION_COLUMNS, App, IdempotencyRecord, Session, SessionEvent

#: Sessions not yet ended (`dialgw.calls.machine.LIVE_STATUSES`), spelled so that
#: the (app_id, status) and (node_id, status) indexes find them without
#: reading ended ones (a ``status <> 'ended'`` makes the database read an
#: app's whole history).
LIVE = "status IN ({})".format(", ".join(f"'{status}'" for status in LIVE_STATUSES))
#: The column stamped when a session reaches each status after the first
#: (``started_at`` is the time of ``dialing``).
_STATUS_TIME_COLUMN = {status: f"{status}_at" for status in STATUSES if status != DIALING}
_SESSION_COLUMNS = ", ".join(SESSION_COLUMNS)


class _IdempotencyRace(Exception):
    """Another transaction stored the same Idempotency-Key first."""


class SessionsStore(AppsStore, EventsStore, IdempotencyStore):
    """Sessions, the events their status changes write, and the apps' live-session counts."""

    def create_session(self, session: Session, occurred_at: float,
                       idempotency: IdempotencyRecord | None) -> Deferred[IdempotencyRecord | None]:
        """Store a new session and its first event, in one transaction.

        With ``idempotency``: if a live record (under 24 hours old, judged
        at ``idempotency.created_at``) already holds the app's key, nothing
        is written and it fires with that record for the caller to replay.
        Otherwise the session row (status ``dialing``), its event 1
        (``session.dialing``, delivery pending) and the idempotency record
        (replacing an expired one) are committed together and it fires with
        None. Requests racing with one key (on several nodes) store one
        session: the others replay it.
        """

        def create(txn: Cursor) -> IdempotencyRecord | None:
            if idempotency is not None:
                existing = self._live_idempotency(txn, idempotency.app_id, idempotency.key,
                                                  idempotency.created_at)
                if existing is not None:
                    return existing
                self._delete_expired_idempotency(txn, idempotency.app_id, idempotency.key, idempotency.created_at)
            row = {name: getattr(session, name) for name in SESSION_COLUMNS}
            # A new session has reached no status but the first.
            row.update(dict.fromkeys(_STATUS_TIME_COLUMN.values()), status=DIALING, hangup_cause=None)
            self._insert(txn, "sessions", row)
            self._insert_event(txn, session.session_uuid, 1, DIALING, occurred_at, None, None)
            self._count_live(txn, session.app_id, +1)
            if idempotency is not None and not self._insert_idempotency(txn, idempotency):
                # Only possible where writers are not serialised
                # (PostgreSQL): the insert waited for the winner's commit.
                # Roll this one back and start again.
                raise _IdempotencyRace()
            return None

        def race(failure: Failure, retries: int) -> Any:
            if not isinstance(failure.value, _IdempotencyRace) or retries == 0:
                return failure
            # A fresh transaction sees the winner's record and replays it.
            return self.run_interaction("create_session", create, write=True).addErrback(race, retries - 1)

        return self.run_interaction("create_session", create, write=True).addErrback(race, 3)

    def _count_live(self, txn: Cursor, app_id: str, change: int) -> None:
        """Keep ``apps.live_sessions``: +1 when a session starts, -1 when it ends."""
        self._execute(txn, "UPDATE apps SET live_sessions = live_sessions + ? WHERE app_id = ?", (change, app_id))

    def get_session(self, session_uuid: str) -> Deferred[Session | None]:
        """The session, or None."""
        return self.run_interaction("get_session", self._get_session, session_uuid, write=False)

    def _get_session(self, txn: Cursor, session_uuid: str) -> Session | None:
        row = self._one(txn, f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_uuid = ?", (session_uuid,))
        return Session.from_row(row) if row is not None else None

    def authenticate_for_session(self, app_id: str, api_key: str,
                                 session_uuid: str) -> Deferred[tuple[App | None, Session | None]]:
        """`authenticate`, and the session if that app owns it, in one transaction.

        ``(None, None)`` when the app does not authenticate; ``(app, None)``
        when the session is unknown or another app's.
        """
        presented = apps.hash_api_key(api_key)  # the one hashing of every authentication

        def own(txn: Cursor) -> tuple[App | None, Session | None]:
            app = self._authenticate(txn, app_id, presented)
            if app is None:
                return None, None
            session = self._get_session(txn, session_uuid)
            return app, session if session is not None and session.app_id == app.app_id else None

        return self.run_interaction("authenticate_for_session", own, write=False)

    def live_node_ids(self) -> Deferred[list[str]]:
        """The gateway nodes that own at least one session not yet ended."""

        def nodes(txn: Cursor) -> list[str]:
            rows = self._all(txn, f"SELECT DISTINCT node_id FROM sessions WHERE {LIVE} ORDER BY node_id")
            return [row["node_id"] for row in rows]

        return self.run_interaction("live_node_ids", nodes, write=False)

    def adopt_live_sessions(self, from_node: str, to_node: str) -> Deferred[list[Session]]:
        """Move ``from_node``'s live sessions to ``to_node``; fire with them.

        One UPDATE: when several nodes adopt at once, each session goes to
        exactly one of them (on PostgreSQL the others wait for the row lock,
        then no longer match).
        """

        def adopt(txn: Cursor) -> list[Session]:
            rows = self._all(
                txn,
                f"UPDATE sessions SET node_id = ? WHERE node_id = ? AND {LIVE} RETURNING {_SESSION_COLUMNS}",
                (to_node, from_node),
            )
            return sorted((Session.from_row(row) for row in rows), key=lambda s: s.started_at)

        return self.run_interaction("adopt_live_sessions", adopt, write=True)

    def live_sessions(self, node_id: str) -> Deferred[list[Session]]:
        """This gateway node's sessions not yet ended, oldest first."""

        def live(txn: Cursor) -> list[Session]:
            rows = self._all(
                txn,
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE node_id = ? AND {LIVE} "
                "ORDER BY started_at, session_uuid",
                (node_id,),
            )
            return [Session.from_row(row) for row in rows]

        return self.run_interaction("live_sessions", live, write=False)

    def count_live_sessions(self, app_id: str) -> Deferred[int]:
        """How many of the app's sessions have not ended (on any node).

        One row read: ``apps.live_sessions`` is kept by the transactions
        that create a session and end one (0 for an unknown app).
        """

        def count(txn: Cursor) -> int:
            row = self._one(txn, "SELECT live_sessions FROM apps WHERE app_id = ?", (app_id,))
            return int(row["live_sessions"]) if row is not None else 0

        return self.run_interaction("count_live_sessions", count, write=False)

    def record_transition(self, session_uuid: str, from_status: str, to_status: str, at: float,
                          hangup_cause: str | None = None) -> Deferred[SessionEvent | None]:
        """Move a session from ``from_status`` to ``to_status`` at most once.

        Compare-and-set: only if the session is still in ``from_status`` is
        its status changed, the time column stamped and the next event
        (pending delivery) written, all in one transaction; it fires with
        that event. Otherwise nothing is written and it fires with None.
        A move that is not forward (`dialgw.calls.machine.is_forward`)
        fails with ValueError.
        """
        if from_status not in STATUSES or to_status not in _STATUS_TIME_COLUMN:
            return fail(ValueError(f"unknown status change {from_status!r} -> {to_status!r}"))
        if not is_forward(from_status, to_status):
            return fail(ValueError(f"status moves forward only, not {from_status!r} -> {to_status!r}"))
        column = _STATUS_TIME_COLUMN[to_status]
        cause = hangup_cause if to_status == ENDED else None

        def transition(txn: Cursor) -> SessionEvent | None:
            self._execute(
                txn,
                f"UPDATE sessions SET status = ?, {column} = ?, hangup_cause = COALESCE(?, hangup_cause) "
                "WHERE session_uuid = ? AND status = ?",
                (to_status, at, cause, session_uuid, from_status),
            )
            if txn.rowcount != 1:
                return None
            duration = None
            if to_status == ENDED:
                row = self._one(txn, "SELECT answered_at, app_id FROM sessions WHERE session_uuid = ?",
                                (session_uuid,))
                assert row is not None
                answered_at = row["answered_at"]
                duration = max(int(round(at - answered_at)) if answered_at is not None else 0, 0)
                self._count_live(txn, row["app_id"], -1)
            sequence = self._next_sequence(txn, session_uuid)
            return self._insert_event(txn, session_uuid, sequence, to_status, at, cause, duration)

        return self.run_interaction("record_transition", transition, write=True)
