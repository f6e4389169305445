"""The store: apps, sessions, session events and idempotency keys over adbapi.

Every public method returns a Deferred (callers ``await`` it). Each runs as
one database transaction in adbapi's thread; the Deferred fires after the
commit. The code is the same on SQLite (one writer at a time) and on
PostgreSQL (several gateway nodes writing at once); what differs is in
`dialgw.store.dialect`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorCore, IReactorThreads
from twisted.logger import Logger

from dialgw.config import DatabaseSettings
from dialgw.store.dialect import (
    SQLITE,
    Dialect,
    describe_dsn,
    postgresql,
    postgresql_pool_args,
    sqlite_pool_args,
    valid_dsn,
)
from dialgw.store.groupcommit import GroupCommit
from dialgw.store.records import (
    EVENT_FOR_STATUS,
    IDEMPOTENCY_TTL_SEC,
    PREVIOUS_SECRET_TTL_SEC,
    STATUSES,
    App,
    AttemptResult,
    Delivery,
    IdempotencyRecord,
    Session,
    SessionEvent,
)
from dialgw.store.schema import DATA_TABLES, MIGRATIONS

log = Logger()

T = TypeVar("T")
Txn = Any  # adbapi.Transaction: a DB-API cursor bound to one connection


class StoreError(Exception):
    """The database cannot be used (missing directory, unreadable, corrupt)."""


class SchemaTooNewError(StoreError):
    """The database was migrated by a newer dialgw than this one."""


class StoreNotEmptyError(StoreError):
    """A copy was asked into a database that already holds dialgw data."""


class _Unset:
    """Marks an `Store.update_app` limit that is left as it is."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()

_APP_COLUMNS = (
    "app_id, name, webhook_url, webhook_secret, previous_webhook_secret, "
    "previous_secret_expires_at, enabled, dials_per_sec, burst, max_concurrent, created_at"
)
_SESSION_COLUMNS = (
    "session_uuid, app_id, node_id, fs_node, channel_uuid, job_uuid, to_number, from_number, "
    "timeout_sec, max_duration_sec, metadata_json, status, started_at, ringing_at, "
    "early_media_at, answered_at, ended_at, hangup_cause, request_id"
)
_EVENT_COLUMNS = (
    "event_id, session_uuid, sequence, event, status, occurred_at, hangup_cause, duration_sec, "
    "delivery_state, attempts, last_error, next_attempt_at, delivered_at"
)
_IDEMPOTENCY_COLUMNS = (
    "app_id, idempotency_key, request_hash, session_uuid, response_status, response_body, created_at"
)
#: Sessions not yet ended, spelled so that the (app_id, status) and
#: (node_id, status) indexes find them without reading ended ones (a
#: `status <> 'ended'` makes the database read an app's whole history).
_LIVE = "status IN ({})".format(", ".join(f"'{status}'" for status in STATUSES if status != "ended"))
#: The column stamped when a session reaches each status.
_STATUS_TIME_COLUMN = {
    "ringing": "ringing_at",
    "early_media": "early_media_at",
    "answered": "answered_at",
    "ended": "ended_at",
}


def hash_api_key(api_key: str) -> str:
    """The SHA-256 hex digest under which an API key is stored."""
    return hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()


# Compared against when the app is unknown, so that an unknown app costs the
# same as a wrong key.
_DUMMY_HASH = hash_api_key("dgk_" + "0" * 32)


def new_app_id() -> str:
    """``app_`` and 16 URL-safe random characters."""
    return "app_" + secrets.token_urlsafe(12)


def new_api_key() -> str:
    """``dgk_`` and 192 random bits, URL-safe."""
    return "dgk_" + secrets.token_urlsafe(24)


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def new_event_id() -> str:
    """``evt_`` and a random UUID's hex digits."""
    return "evt_" + uuid.uuid4().hex


def _app(row: tuple[Any, ...], caller_ids: frozenset[str]) -> App:
    (app_id, name, webhook_url, secret, previous, previous_expires, enabled, dps, burst, max_conc,
     created_at) = row
    return App(
        app_id=app_id,
        name=name,
        webhook_url=webhook_url,
        webhook_secret=secret,
        previous_webhook_secret=previous,
        previous_secret_expires_at=previous_expires,
        enabled=bool(enabled),
        caller_ids=caller_ids,
        dials_per_sec=dps,
        burst=burst,
        max_concurrent=max_conc,
        created_at=created_at,
    )


def _session(row: tuple[Any, ...]) -> Session:
    return Session(*row)


def _event(row: tuple[Any, ...]) -> SessionEvent:
    return SessionEvent(*row)


def _idempotency(row: tuple[Any, ...]) -> IdempotencyRecord:
    return IdempotencyRecord(*row)


class _IdempotencyRace(Exception):
    """Another transaction stored the same Idempotency-Key first."""


_DELIVERY_COLUMNS = ", ".join(f"e.{name.strip()}" for name in _EVENT_COLUMNS.split(",")) + (
    ", s.app_id, s.to_number, s.from_number, s.metadata_json, a.webhook_url, a.webhook_secret, "
    "a.previous_webhook_secret, a.previous_secret_expires_at"
)
_DELIVERY_STATE = {"delivered": "delivered", "retry": "pending", "failed": "failed"}


class _Outbox:
    """The webhook outbox half of `Store`: claiming due events, recording attempts."""

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

        def claim(txn: Txn) -> list[Delivery]:
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
                event = SessionEvent(*row[:13])
                app_id, to_number, from_number, metadata_json, url, secret, previous, expires = row[13:]
                secrets_now = (secret,)
                if previous is not None and expires is not None and now < expires:
                    secrets_now = (secret, previous)
                deliveries.append(
                    Delivery(event, app_id, url, secrets_now, to_number, from_number, metadata_json)
                )
                self._execute(
                    txn,
                    "UPDATE session_events SET next_attempt_at = ? WHERE event_id = ?",
                    (lease_until, event.event_id),
                )
            return deliveries

        return self._run(True, claim)

    def record_attempts(self, results: list[AttemptResult]) -> Deferred[None]:
        """Record the results of several attempts in one transaction."""

        def record(txn: Txn) -> None:
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
                self._execute(
                    txn,
                    "INSERT INTO webhook_attempts (event_id, attempt, attempted_at, status_code, error, outcome) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (result.event_id, row[0], result.attempted_at, result.status_code, result.error,
                     result.outcome),
                )

        return self._run(True, record)

    def webhook_attempts(self, event_id: str) -> Deferred[list[tuple[int, float, int | None, str | None, str]]]:
        """``(attempt, attempted_at, status_code, error, outcome)`` of an event, in order."""

        def attempts(txn: Txn) -> list[tuple[int, float, int | None, str | None, str]]:
            return [
                tuple(row)
                for row in self._all(
                    txn,
                    "SELECT attempt, attempted_at, status_code, error, outcome FROM webhook_attempts "
                    "WHERE event_id = ? ORDER BY attempt",
                    (event_id,),
                )
            ]

        return self._run(False, attempts)

    def count_pending_events(self) -> Deferred[int]:
        """How many webhooks wait for delivery (the outbox backlog)."""

        def count(txn: Txn) -> int:
            row = self._one(txn, "SELECT COUNT(*) FROM session_events WHERE delivery_state = 'pending'")
            return int(row[0]) if row else 0

        return self._run(False, count)


class Store(_Outbox):
    """Apps, sessions, their events (the webhook outbox) and idempotency keys."""

    def __init__(self, pool: adbapi.ConnectionPool, dialect: Dialect) -> None:
        self._pool = pool
        self._dialect = dialect
        self._closed = False
        self.group_commit = (
            GroupCommit(pool, dialect.begin_read, dialect.begin_write) if dialect.group_commit else None
        )

    # --- plumbing

    def _run(self, write: bool, interaction: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run ``interaction(txn, *args)`` as one transaction, or as one
        savepoint of a shared transaction (group commit, SQLite); either
        way the Deferred fires after the commit."""
        if self.group_commit is not None:
            return self.group_commit.run(write, interaction, *args)

        def transaction(txn: Txn) -> T:
            begin = self._dialect.begin_write if write else self._dialect.begin_read
            if begin is not None:
                txn.execute(begin)
            return interaction(txn, *args)

        return self._pool.runInteraction(transaction)

    def _execute(self, txn: Txn, sql: str, params: tuple[Any, ...] = ()) -> None:
        txn.execute(self._dialect.sql(sql), params)

    def _one(self, txn: Txn, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        self._execute(txn, sql, params)
        return txn.fetchone()

    def _all(self, txn: Txn, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        self._execute(txn, sql, params)
        return list(txn.fetchall())

    def migrate(self) -> Deferred[int]:
        """Bring the schema up to date; fire with the version now in force."""
        return self._run(True, self._migrate)

    def _migrate(self, txn: Txn) -> int:
        if self._dialect.migration_lock is not None:
            # Held until this transaction ends: a node starting at the same
            # time waits here, then finds the schema up to date.
            self._execute(txn, self._dialect.migration_lock)
        self._execute(txn, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self._one(txn, "SELECT version FROM schema_version")
        if row is None:
            self._execute(txn, "INSERT INTO schema_version (version) VALUES (0)")
            version = 0
        else:
            version = row[0]
        if version > len(MIGRATIONS):
            raise SchemaTooNewError(
                f"database schema version {version} is newer than this dialgw knows "
                f"({len(MIGRATIONS)}); run a newer dialgw"
            )
        for number in range(version + 1, len(MIGRATIONS) + 1):
            for statement in MIGRATIONS[number - 1]:
                self._execute(txn, self._dialect.ddl(statement))
            self._execute(txn, "UPDATE schema_version SET version = ?", (number,))
            log.info("database schema migrated to version {version}", version=number)
        return len(MIGRATIONS)

    def count_rows(self) -> Deferred[dict[str, int]]:
        """How many rows each data table holds (`DATA_TABLES`, in that order)."""
        return self._run(False, self._count_rows)

    def _count_rows(self, txn: Txn) -> dict[str, int]:
        counts = {}
        for table in DATA_TABLES:
            row = self._one(txn, f"SELECT COUNT(*) FROM {table}")
            counts[table] = int(row[0]) if row else 0
        return counts

    def copy_from_sqlite(self, path: str, batch: int = 500) -> Deferred[dict[str, int]]:
        """Copy every row of the SQLite database at ``path`` into this store.

        One transaction: all rows or none. The source must already be at
        this code's schema version (open it with `open_sqlite_store`
        first); it is only read. This store must hold no dialgw data, else
        `StoreNotEmptyError` and nothing is written. Fires with the rows
        copied per table.
        """
        source_uri = Path(path).absolute().as_uri() + "?mode=ro"

        def copy(txn: Txn) -> dict[str, int]:
            if self._dialect.migration_lock is not None:
                # A second copy into the same database waits, then is refused.
                self._execute(txn, self._dialect.migration_lock)
            present = {table: n for table, n in self._count_rows(txn).items() if n}
            if present:
                held = ", ".join(f"{table}: {n}" for table, n in present.items())
                raise StoreNotEmptyError(f"the target already holds dialgw data ({held}); "
                                         "copy only into an empty database")
            source = sqlite3.connect(source_uri, uri=True)
            try:
                source.execute("BEGIN")  # one snapshot of every table
                copied = {table: self._copy_table(txn, source, table, batch) for table in DATA_TABLES}
            finally:
                source.close()
            if self._count_rows(txn) != copied:
                raise StoreError("the copy does not match the source's row counts")
            return copied

        return self._run(True, copy)

    def _copy_table(self, txn: Txn, source: sqlite3.Connection, table: str, batch: int) -> int:
        cursor = source.execute(f"SELECT * FROM {table}")
        columns = [d[0] for d in cursor.description]
        row_marks = "(" + ", ".join("?" * len(columns)) + ")"
        copied = 0
        while rows := cursor.fetchmany(batch):
            self._execute(
                txn,
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row_marks] * len(rows))}",
                tuple(value for row in rows for value in row),
            )
            copied += len(rows)
        return copied

    def close(self) -> None:
        """Close the connection and stop the database thread (idempotent)."""
        if not self._closed:
            self._closed = True
            self._pool.close()

    # --- apps

    def _get_app(self, txn: Txn, app_id: str) -> App | None:
        row = self._one(txn, f"SELECT {_APP_COLUMNS} FROM apps WHERE app_id = ?", (app_id,))
        return self._with_caller_ids(txn, row) if row is not None else None

    def _with_caller_ids(self, txn: Txn, row: tuple[Any, ...]) -> App:
        """The app of an ``_APP_COLUMNS`` row, with its caller-ID allow-list."""
        numbers = self._all(txn, "SELECT number FROM app_caller_ids WHERE app_id = ?", (row[0],))
        return _app(row, frozenset(n for (n,) in numbers))

    def create_app(self, name: str, webhook_url: str, caller_ids: frozenset[str] | set[str] | list[str],
                   now: float) -> Deferred[tuple[App, str]]:
        """Create an enabled app; fire with it and its API key (shown only now).

        Only the key's SHA-256 is stored. Inputs are stored as given: the
        caller (``dialgw-admin``) validates the URL and the numbers.
        """
        app_id, api_key, secret = new_app_id(), new_api_key(), new_webhook_secret()
        numbers = sorted(set(caller_ids))

        def create(txn: Txn) -> tuple[App, str]:
            self._execute(
                txn,
                "INSERT INTO apps (app_id, name, api_key_hash, webhook_url, webhook_secret, enabled, "
                "created_at) VALUES (?, ?, ?, ?, ?, 1, ?)",
                (app_id, name, hash_api_key(api_key), webhook_url, secret, now),
            )
            for number in numbers:
                self._execute(txn, "INSERT INTO app_caller_ids (app_id, number) VALUES (?, ?)", (app_id, number))
            app = self._get_app(txn, app_id)
            assert app is not None
            return app, api_key

        return self._run(True, create)

    def get_app(self, app_id: str) -> Deferred[App | None]:
        """The app, or None."""
        return self._run(False, self._get_app, app_id)

    def authenticate(self, app_id: str, api_key: str) -> Deferred[App | None]:
        """The app if it exists, is enabled and ``api_key`` is its key; else None.

        The key is hashed and compared in constant time whether or not the
        app exists.
        """
        return self._run(False, self._authenticate, app_id, hash_api_key(api_key))

    def authenticate_for_session(self, app_id: str, api_key: str,
                                 session_uuid: str) -> Deferred[tuple[App | None, Session | None]]:
        """`authenticate`, and the session if that app owns it, in one transaction.

        ``(None, None)`` when the app does not authenticate; ``(app, None)``
        when the session is unknown or another app's.
        """
        presented = hash_api_key(api_key)

        def own(txn: Txn) -> tuple[App | None, Session | None]:
            app = self._authenticate(txn, app_id, presented)
            if app is None:
                return None, None
            session = self._get_session(txn, session_uuid)
            return app, session if session is not None and session.app_id == app.app_id else None

        return self._run(False, own)

    def _authenticate(self, txn: Txn, app_id: str, presented: str) -> App | None:
        # One read of the app's row: its key hash, then the app itself.
        row = self._one(txn, f"SELECT api_key_hash, {_APP_COLUMNS} FROM apps WHERE app_id = ?", (app_id,))
        stored = row[0] if row is not None else _DUMMY_HASH
        matches = hmac.compare_digest(presented.encode("ascii"), stored.encode("ascii"))
        if row is None or not matches:
            return None
        app = self._with_caller_ids(txn, row[1:])
        return app if app.enabled else None

    def list_apps(self) -> Deferred[list[App]]:
        """All apps, oldest first."""

        def list_apps(txn: Txn) -> list[App]:
            numbers: dict[str, set[str]] = {}
            for app_id, number in self._all(txn, "SELECT app_id, number FROM app_caller_ids"):
                numbers.setdefault(app_id, set()).add(number)
            rows = self._all(txn, f"SELECT {_APP_COLUMNS} FROM apps ORDER BY created_at, app_id")
            return [_app(row, frozenset(numbers.get(row[0], ()))) for row in rows]

        return self._run(False, list_apps)

    def update_app(self, app_id: str, *, name: str | None = None, webhook_url: str | None = None,
                   enabled: bool | None = None, dials_per_sec: float | None = UNSET,
                   burst: int | None = UNSET, max_concurrent: int | None = UNSET) -> Deferred[App | None]:
        """Change the given fields; fire with the app as it now is, or None if unknown.

        ``name``, ``webhook_url`` and ``enabled`` change when not None. The
        limits change when given; None clears an override (the config
        default applies again).
        """
        changes: list[tuple[str, Any]] = []
        if name is not None:
            changes.append(("name", name))
        if webhook_url is not None:
            changes.append(("webhook_url", webhook_url))
        if enabled is not None:
            changes.append(("enabled", 1 if enabled else 0))
        for column, value in (("dials_per_sec", dials_per_sec), ("burst", burst),
                              ("max_concurrent", max_concurrent)):
            if value is not UNSET:
                changes.append((column, value))

        def update(txn: Txn) -> App | None:
            if changes:
                assignments = ", ".join(f"{column} = ?" for column, _ in changes)
                self._execute(txn, f"UPDATE apps SET {assignments} WHERE app_id = ?",
                              (*[value for _, value in changes], app_id))
            return self._get_app(txn, app_id)

        return self._run(bool(changes), update)

    def rotate_key(self, app_id: str) -> Deferred[str | None]:
        """Replace the app's API key at once; fire with the new key, or None if unknown."""
        api_key = new_api_key()

        def rotate(txn: Txn) -> str | None:
            self._execute(txn, "UPDATE apps SET api_key_hash = ? WHERE app_id = ?", (hash_api_key(api_key), app_id))
            return api_key if txn.rowcount == 1 else None

        return self._run(True, rotate)

    def rotate_webhook_secret(self, app_id: str, now: float) -> Deferred[str | None]:
        """New webhook secret; the old one keeps signing for 24 hours.

        Fires with the new secret, or None if the app is unknown.
        """
        secret = new_webhook_secret()

        def rotate(txn: Txn) -> str | None:
            self._execute(
                txn,
                "UPDATE apps SET previous_webhook_secret = webhook_secret, previous_secret_expires_at = ?, "
                "webhook_secret = ? WHERE app_id = ?",
                (now + PREVIOUS_SECRET_TTL_SEC, secret, app_id),
            )
            return secret if txn.rowcount == 1 else None

        return self._run(True, rotate)

    def delete_app(self, app_id: str) -> Deferred[bool]:
        """Delete the app with everything it owns; fire with whether it existed.

        Its caller IDs, idempotency keys, sessions and their events (with
        any webhooks still pending) go with it: nothing is kept for
        history. Disable the app and let its calls end before deleting it;
        a call still live in FreeSWITCH is then no longer in the store.
        """

        def delete(txn: Txn) -> bool:
            self._execute(txn, "DELETE FROM apps WHERE app_id = ?", (app_id,))
            return txn.rowcount == 1

        return self._run(True, delete)

    def add_caller_id(self, app_id: str, number: str) -> Deferred[bool]:
        """Allow ``number`` as the app's caller ID; False if the app is unknown."""

        def add(txn: Txn) -> bool:
            if self._one(txn, "SELECT 1 FROM apps WHERE app_id = ?", (app_id,)) is None:
                return False
            self._execute(
                txn,
                "INSERT INTO app_caller_ids (app_id, number) VALUES (?, ?) ON CONFLICT (app_id, number) DO NOTHING",
                (app_id, number),
            )
            return True

        return self._run(True, add)

    def remove_caller_id(self, app_id: str, number: str) -> Deferred[bool]:
        """Remove ``number`` from the allow-list; False if it was not on it."""

        def remove(txn: Txn) -> bool:
            self._execute(txn, "DELETE FROM app_caller_ids WHERE app_id = ? AND number = ?", (app_id, number))
            return txn.rowcount == 1

        return self._run(True, remove)

    # --- idempotency

    def _live_idempotency(self, txn: Txn, app_id: str, key: str, now: float) -> IdempotencyRecord | None:
        row = self._one(
            txn,
            f"SELECT {_IDEMPOTENCY_COLUMNS} FROM idempotency_keys "
            "WHERE app_id = ? AND idempotency_key = ? AND created_at > ?",
            (app_id, key, now - IDEMPOTENCY_TTL_SEC),
        )
        return _idempotency(row) if row is not None else None

    def find_idempotency(self, app_id: str, key: str, now: float) -> Deferred[IdempotencyRecord | None]:
        """The record for this app's key if stored less than 24 hours before ``now``."""
        return self._run(False, self._live_idempotency, app_id, key, now)

    def prune_idempotency(self, now: float) -> Deferred[int]:
        """Delete keys older than 24 hours; fire with how many went."""

        def prune(txn: Txn) -> int:
            self._execute(txn, "DELETE FROM idempotency_keys WHERE created_at <= ?", (now - IDEMPOTENCY_TTL_SEC,))
            return txn.rowcount

        return self._run(True, prune)

    # --- sessions

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

        def create(txn: Txn) -> IdempotencyRecord | None:
            if idempotency is not None:
                existing = self._live_idempotency(txn, idempotency.app_id, idempotency.key,
                                                  idempotency.created_at)
                if existing is not None:
                    return existing
                # Only an expired record: one stored by a racing request
                # since the read above must stay and win.
                self._execute(
                    txn,
                    "DELETE FROM idempotency_keys WHERE app_id = ? AND idempotency_key = ? AND created_at <= ?",
                    (idempotency.app_id, idempotency.key, idempotency.created_at - IDEMPOTENCY_TTL_SEC),
                )
            self._execute(
                txn,
                f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES ({', '.join('?' * 19)})",
                (session.session_uuid, session.app_id, session.node_id, session.fs_node, session.channel_uuid,
                 session.job_uuid, session.to_number, session.from_number, session.timeout_sec,
                 session.max_duration_sec, session.metadata_json, "dialing", session.started_at,
                 None, None, None, None, None, session.request_id),
            )
            self._insert_event(txn, session.session_uuid, 1, "dialing", occurred_at, None, None)
            self._execute(txn, "UPDATE apps SET live_sessions = live_sessions + 1 WHERE app_id = ?",
                          (session.app_id,))
            if idempotency is not None:
                self._execute(
                    txn,
                    f"INSERT INTO idempotency_keys ({_IDEMPOTENCY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (app_id, idempotency_key) DO NOTHING",
                    (idempotency.app_id, idempotency.key, idempotency.request_hash, idempotency.session_uuid,
                     idempotency.response_status, idempotency.response_body, idempotency.created_at),
                )
                if txn.rowcount != 1:
                    # Only possible where writers are not serialised
                    # (PostgreSQL): the insert waited for the winner's
                    # commit. Roll this one back (a unique violation would
                    # have aborted the transaction anyway, hence DO NOTHING
                    # and the row count) and start again.
                    raise _IdempotencyRace()
            return None

        def race(failure: Any, retries: int) -> Any:
            failure.trap(_IdempotencyRace)
            if retries == 0:
                return failure
            # A fresh transaction sees the winner's record and replays it.
            return self._run(True, create).addErrback(race, retries - 1)

        return self._run(True, create).addErrback(race, 3)

    def get_session(self, session_uuid: str) -> Deferred[Session | None]:
        """The session, or None."""
        return self._run(False, self._get_session, session_uuid)

    def _get_session(self, txn: Txn, session_uuid: str) -> Session | None:
        row = self._one(txn, f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_uuid = ?", (session_uuid,))
        return _session(row) if row is not None else None

    def live_node_ids(self) -> Deferred[list[str]]:
        """The gateway nodes that own at least one session not yet ended."""

        def nodes(txn: Txn) -> list[str]:
            rows = self._all(
                txn, f"SELECT DISTINCT node_id FROM sessions WHERE {_LIVE} ORDER BY node_id"
            )
            return [row[0] for row in rows]

        return self._run(False, nodes)

    def adopt_live_sessions(self, from_node: str, to_node: str) -> Deferred[list[Session]]:
        """Move ``from_node``'s live sessions to ``to_node``; fire with them.

        One UPDATE: when several nodes adopt at once, each session goes to
        exactly one of them (on PostgreSQL the others wait for the row lock,
        then no longer match).
        """

        def adopt(txn: Txn) -> list[Session]:
            self._execute(
                txn,
                f"UPDATE sessions SET node_id = ? WHERE node_id = ? AND {_LIVE} "
                f"RETURNING {_SESSION_COLUMNS}",
                (to_node, from_node),
            )
            return sorted((_session(row) for row in txn.fetchall()), key=lambda s: s.started_at)

        return self._run(True, adopt)

    def ping(self) -> Deferred[None]:
        """A trivial query: does the database answer?"""

        def ping(txn: Txn) -> None:
            self._one(txn, "SELECT 1")

        return self._run(False, ping)

    def live_sessions(self, node_id: str) -> Deferred[list[Session]]:
        """This gateway node's sessions not yet ended, oldest first."""

        def live(txn: Txn) -> list[Session]:
            rows = self._all(
                txn,
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE node_id = ? AND {_LIVE} "
                "ORDER BY started_at, session_uuid",
                (node_id,),
            )
            return [_session(row) for row in rows]

        return self._run(False, live)

    def count_live_sessions(self, app_id: str) -> Deferred[int]:
        """How many of the app's sessions have not ended (on any node).

        One row read: ``apps.live_sessions`` is kept by the transactions
        that create a session and end one (0 for an unknown app).
        """

        def count(txn: Txn) -> int:
            row = self._one(txn, "SELECT live_sessions FROM apps WHERE app_id = ?", (app_id,))
            return int(row[0]) if row is not None else 0

        return self._run(False, count)

    def record_transition(self, session_uuid: str, from_status: str, to_status: str, at: float,
                          hangup_cause: str | None = None) -> Deferred[SessionEvent | None]:
        """Move a session from ``from_status`` to ``to_status`` at most once.

        Compare-and-set: only if the session is still in ``from_status`` is
        its status changed, the time column stamped and the next event
        (pending delivery) written, all in one transaction; it fires with
        that event. Otherwise nothing is written and it fires with None.
        A move that is not forward fails with ValueError.
        """
        if from_status not in STATUSES or to_status not in _STATUS_TIME_COLUMN:
            return fail(ValueError(f"unknown status change {from_status!r} -> {to_status!r}"))
        if STATUSES.index(to_status) <= STATUSES.index(from_status):
            return fail(ValueError(f"status moves forward only, not {from_status!r} -> {to_status!r}"))
        column = _STATUS_TIME_COLUMN[to_status]
        cause = hangup_cause if to_status == "ended" else None

        def transition(txn: Txn) -> SessionEvent | None:
            self._execute(
                txn,
                f"UPDATE sessions SET status = ?, {column} = ?, hangup_cause = COALESCE(?, hangup_cause) "
                "WHERE session_uuid = ? AND status = ?",
                (to_status, at, cause, session_uuid, from_status),
            )
            if txn.rowcount != 1:
                return None
            duration = None
            if to_status == "ended":
                row = self._one(txn, "SELECT answered_at, app_id FROM sessions WHERE session_uuid = ?",
                                (session_uuid,))
                assert row is not None
                answered_at, app_id = row
                duration = int(round(at - answered_at)) if answered_at is not None else 0
                duration = max(duration, 0)
                self._execute(txn, "UPDATE apps SET live_sessions = live_sessions - 1 WHERE app_id = ?",
                              (app_id,))
            row = self._one(txn, "SELECT MAX(sequence) FROM session_events WHERE session_uuid = ?", (session_uuid,))
            sequence = (row[0] or 0) + 1 if row is not None else 1
            return self._insert_event(txn, session_uuid, sequence, to_status, at, cause, duration)

        return self._run(True, transition)

    def _insert_event(self, txn: Txn, session_uuid: str, sequence: int, status: str, at: float,
                      hangup_cause: str | None, duration_sec: int | None) -> SessionEvent:
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
        self._execute(
            txn,
            f"INSERT INTO session_events ({_EVENT_COLUMNS}) VALUES ({', '.join('?' * 13)})",
            (event.event_id, event.session_uuid, event.sequence, event.event, event.status, event.occurred_at,
             event.hangup_cause, event.duration_sec, event.delivery_state, event.attempts, event.last_error,
             event.next_attempt_at, event.delivered_at),
        )
        return event

    def session_events(self, session_uuid: str) -> Deferred[list[SessionEvent]]:
        """The session's events in sequence order."""

        def events(txn: Txn) -> list[SessionEvent]:
            rows = self._all(
                txn,
                f"SELECT {_EVENT_COLUMNS} FROM session_events WHERE session_uuid = ? ORDER BY sequence",
                (session_uuid,),
            )
            return [_event(row) for row in rows]

        return self._run(False, events)


async def open_sqlite_store(reactor: IReactorCore | IReactorThreads | Any, path: str) -> Store:
    """Open (creating if needed) and migrate the SQLite database at ``path``.

    The directory must exist: a missing one is a `StoreError`, as is a
    file that cannot be opened or a schema newer than this code.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise StoreError(f"cannot open database {path}: directory {directory} does not exist")
    args, kwargs = sqlite_pool_args(path)
    pool = adbapi.ConnectionPool(SQLITE.dbapi_name, *args, cp_reactor=reactor, **kwargs)
    return await _migrated(Store(pool, SQLITE), f"database {path}")


async def _migrated(store: Store, where: str) -> Store:
    """``store``, its schema brought up to date; closed again if that fails."""
    try:
        await store.migrate()
    except SchemaTooNewError:
        store.close()
        raise
    except Exception as e:
        store.close()
        raise StoreError(f"cannot open {where}: {' '.join(str(e).split())}") from e
    return store


#: Connections (and database threads) per gateway node on PostgreSQL.
POSTGRESQL_POOL_SIZE = 5


async def open_postgresql_store(reactor: IReactorCore | IReactorThreads | Any, dsn: str,
                                pool_size: int = POSTGRESQL_POOL_SIZE) -> Store:
    """Connect to the PostgreSQL database ``dsn`` (a libpq connection string) and migrate it.

    Several gateway nodes may open one database at once: they migrate one
    after the other. No psycopg2, an unreachable server or a refused login
    is a `StoreError` (naming the database, never the password), as is a
    schema newer than this code (`SchemaTooNewError`).
    """
    where = describe_dsn(dsn)
    try:
        dialect = postgresql()
    except ImportError as e:
        raise StoreError(f"cannot open {where}: psycopg2 is not installed ({e})") from e
    if not valid_dsn(dsn):
        raise StoreError("the PostgreSQL dsn is not a libpq connection string "
                         "(key=value pairs such as 'host=127.0.0.1 dbname=dialgw user=dialgw', or a URI)")
    args, kwargs = postgresql_pool_args(dsn, pool_size)
    pool = adbapi.ConnectionPool(dialect.dbapi_name, *args, cp_reactor=reactor, **kwargs)
    return await _migrated(Store(pool, dialect), where)


async def open_store(reactor: Any, database: DatabaseSettings) -> Store:
    """Open the store the ``[database]`` section names: ``sqlite`` (``path``) or ``postgresql`` (``dsn``)."""
    if database.backend == "sqlite":
        return await open_sqlite_store(reactor, database.path)
    if database.backend == "postgresql":
        if not database.dsn:
            raise StoreError("[database] dsn is required with backend = postgresql")
        return await open_postgresql_store(reactor, database.dsn)
    raise StoreError(f"unknown database backend {database.backend!r}")
