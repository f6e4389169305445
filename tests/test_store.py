"""Tests for dialgw.store on both backends (and dialgw.timefmt).

Every behaviour is tested on a real SQLite file and on a fresh PostgreSQL
database (see `tests.pg`): the test mixins below run once per backend
class. Several nodes writing at once are two `Store` objects (two pools)
on one database.
"""

from __future__ import annotations

import calendar
import datetime
import os
import socket
import sqlite3
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dialgw.store import (
    UNSET,
    AttemptResult,
    IdempotencyRecord,
    SchemaTooNewError,
    Session,
    Store,
    StoreError,
    StoreNotEmptyError,
    dbapi,
    hash_api_key,
    maintenance,
    open_postgresql_store,
    open_sqlite_store,
)
from dialgw.store.records import SESSION_COLUMNS
from dialgw.store.schema import DATA_TABLES, MIGRATIONS, SCHEMA_VERSION
from dialgw.store.sessions import LIVE
from dialgw.timefmt import rfc3339
from tests import pg

NOW = 1_800_000_000.0
DAY = 86400.0


def new_session(app_id: str, node_id: str = "acW68", started_at: float = NOW, fs_node: str = "fs1") -> Session:
    channel = str(uuid.uuid4())
    return Session(
        session_uuid=f"{node_id}-{channel}",
        app_id=app_id,
        node_id=node_id,
        fs_node=fs_node,
        channel_uuid=channel,
        job_uuid=str(uuid.uuid4()),
        to_number="0527121102",
        from_number="0721234567",
        timeout_sec=30,
        max_duration_sec=3600,
        metadata_json='{"order":17}',
        started_at=started_at,
        request_id="req-1",
    )


# --- backends: each opens stores on its own fresh database


class SQLiteBackend(TestCase):
    """Each test gets its own directory and an open store on a file in it."""

    integrity_error: type[Exception] = sqlite3.IntegrityError

    async def setUp(self) -> None:
        directory = self.mktemp()
        os.mkdir(directory)
        self.path = os.path.join(directory, "dialgw.sqlite")
        self.store = await self.open()

    async def open_unmanaged(self) -> Store:
        """Another store on the test's database; the caller closes it."""
        return await open_sqlite_store(reactor, self.path)

    async def open(self) -> Store:
        """Another store on the test's database (another node), closed at cleanup."""
        store = await self.open_unmanaged()
        self.addCleanup(store.close)
        return store

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement on a connection of its own, committed; its rows."""
        db = sqlite3.connect(self.path)
        try:
            rows = db.execute(sql, params).fetchall()
            db.commit()
            return rows
        finally:
            db.close()

    def tables(self) -> set[str]:
        return {name for (name,) in self.query("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def stored_bytes(self) -> bytes:
        """Every byte the database keeps (with the store closed)."""
        data = b""
        for name in os.listdir(os.path.dirname(self.path)):
            with open(os.path.join(os.path.dirname(self.path), name), "rb") as f:
                data += f.read()
        return data


class PostgreSQLBackend(TestCase):
    """Each test gets its own database on the local PostgreSQL server."""

    async def setUp(self) -> None:
        self.dsn = pg.create_database(self)
        import psycopg2

        self.integrity_error = psycopg2.IntegrityError
        self.store = await self.open()

    async def open_unmanaged(self) -> Store:
        return await open_postgresql_store(reactor, self.dsn)

    async def open(self) -> Store:
        store = await self.open_unmanaged()
        self.addCleanup(store.close)
        return store

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return pg.query(self.dsn, sql, params)

    def tables(self) -> set[str]:
        return {name for (name,) in self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}

    def stored_bytes(self) -> bytes:
        """Every row of every table, as text."""
        rows = []
        for table in self.tables():
            rows += [text for (text,) in self.query(f"SELECT t::text FROM {table} t")]
        return "\n".join(rows).encode()


class StoreTests:
    """Helpers of the test mixins; a backend class provides the rest."""

    store: Store

    async def new_app(self, name: str = "shop", caller_ids: tuple[str, ...] = ("0721234567",)):
        return await self.store.create_app(name, "https://example.com/hook", set(caller_ids), NOW)


class OpenTests(StoreTests):
    async def test_migrations_are_idempotent_across_reopen(self) -> None:
        app, _ = await self.new_app()
        self.store.close()
        again = await self.open()
        again2 = await self.open()
        self.assertEqual((await again.get_app(app.app_id)).name, "shop")
        self.assertEqual((await again2.get_app(app.app_id)).name, "shop")
        self.assertEqual(self.query("SELECT version FROM schema_version"), [(SCHEMA_VERSION,)])

    async def test_new_migration_applies_on_reopen(self) -> None:
        self.store.close()
        self.patch(maintenance, "MIGRATIONS", MIGRATIONS + (("CREATE TABLE extra (x INTEGER)",),))
        await self.open()
        self.assertEqual(self.query("SELECT version FROM schema_version"), [(SCHEMA_VERSION + 1,)])
        self.assertEqual(self.query("SELECT COUNT(*) FROM extra"), [(0,)])

    async def test_failed_migration_changes_nothing(self) -> None:
        self.store.close()
        self.patch(maintenance, "MIGRATIONS", MIGRATIONS + (("CREATE TABLE extra (x INTEGER)", "NOT SQL"),))
        with self.assertRaises(StoreError):
            await self.open_unmanaged()
        self.assertEqual(self.query("SELECT version FROM schema_version"), [(SCHEMA_VERSION,)])
        self.assertNotIn("extra", self.tables())

    async def test_newer_schema_is_refused_clearly(self) -> None:
        self.store.close()
        self.query("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
        with self.assertRaises(SchemaTooNewError) as cm:
            await self.open_unmanaged()
        self.assertIn(f"schema version {SCHEMA_VERSION + 1} is newer", str(cm.exception))

    async def test_data_tables_are_every_table(self) -> None:
        # The copy between backends copies DATA_TABLES: a new table must be listed.
        self.assertEqual(self.tables(), {*DATA_TABLES, "schema_version"})

    async def test_every_transaction_is_named(self) -> None:
        self.assertEqual(self.store.interactions, {"migrate": 1})
        app, _ = await self.new_app()
        await gatherResults([self.store.get_app(app.app_id), self.store.get_app(app.app_id),
                             self.store.count_pending_events()])
        self.assertEqual(self.store.interactions,
                         {"migrate": 1, "create_app": 1, "get_app": 2, "count_pending_events": 1})


class AppTests(StoreTests):
    async def test_create_app_returns_key_once_and_stores_only_its_hash(self) -> None:
        app, api_key = await self.new_app(caller_ids=("0721234567", "021234567"))
        self.assertRegex(app.app_id, r"^app_[A-Za-z0-9_-]{16}$")
        self.assertRegex(api_key, r"^dgk_[A-Za-z0-9_-]{32}$")
        self.assertRegex(app.webhook_secret, r"^whsec_[A-Za-z0-9+/]{43}=$")
        self.assertEqual(app.caller_ids, frozenset({"0721234567", "021234567"}))
        self.assertTrue(app.enabled)
        self.assertEqual((app.dials_per_sec, app.burst, app.max_concurrent), (None, None, None))
        self.assertEqual(app.created_at, NOW)
        self.store.close()
        data = self.stored_bytes()
        self.assertNotIn(api_key.encode(), data)
        self.assertNotIn(api_key[4:].encode(), data)
        self.assertIn(hash_api_key(api_key).encode(), data)

    async def test_authenticate(self) -> None:
        app, api_key = await self.new_app()
        other, other_key = await self.new_app("other")
        self.assertEqual(await self.store.authenticate(app.app_id, api_key), app)
        cases = [
            ("wrong key", app.app_id, api_key + "x"),
            ("another app's key", app.app_id, other_key),
            ("unknown app", "app_nonexistent0000", api_key),
            ("empty key", app.app_id, ""),
            ("non-ascii key", app.app_id, "dgk_\u05d0\udcff"),
        ]
        for name, app_id, key in cases:
            self.assertIsNone(await self.store.authenticate(app_id, key), name)
        await self.store.update_app(app.app_id, enabled=False)
        self.assertIsNone(await self.store.authenticate(app.app_id, api_key), "disabled app")

    async def test_authenticate_for_session(self) -> None:
        app, api_key = await self.new_app()
        other, other_key = await self.new_app("other")
        mine, theirs = new_session(app.app_id), new_session(other.app_id)
        for session in (mine, theirs):
            await self.store.create_session(session, NOW, None)
        found_app, found = await self.store.authenticate_for_session(app.app_id, api_key, mine.session_uuid)
        self.assertEqual((found_app, found.session_uuid, found.status), (app, mine.session_uuid, "dialing"))
        self.assertEqual(await self.store.authenticate_for_session(app.app_id, api_key, theirs.session_uuid),
                         (app, None))
        self.assertEqual(await self.store.authenticate_for_session(app.app_id, api_key, "acW68-nope"),
                         (app, None))
        self.assertEqual(await self.store.authenticate_for_session(app.app_id, other_key, mine.session_uuid),
                         (None, None))
        await self.store.update_app(app.app_id, enabled=False)
        self.assertEqual(await self.store.authenticate_for_session(app.app_id, api_key, mine.session_uuid),
                         (None, None))

    async def test_rotate_key_replaces_the_old_key(self) -> None:
        app, old = await self.new_app()
        new = await self.store.rotate_key(app.app_id)
        self.assertNotEqual(new, old)
        self.assertIsNone(await self.store.authenticate(app.app_id, old))
        self.assertIsNotNone(await self.store.authenticate(app.app_id, new))
        self.assertIsNone(await self.store.rotate_key("app_unknown"))

    async def test_rotate_webhook_secret_keeps_previous_for_a_day(self) -> None:
        app, _ = await self.new_app()
        at = NOW + 100
        secret = await self.store.rotate_webhook_secret(app.app_id, at)
        rotated = await self.store.get_app(app.app_id)
        self.assertEqual(rotated.webhook_secret, secret)
        self.assertEqual(rotated.previous_webhook_secret, app.webhook_secret)
        self.assertEqual(rotated.previous_secret_expires_at, at + DAY)
        self.assertEqual(rotated.signing_secrets(at + DAY - 1), (secret, app.webhook_secret))
        self.assertEqual(rotated.signing_secrets(at + DAY), (secret,))
        self.assertIsNone(await self.store.rotate_webhook_secret("app_unknown", at))

    async def test_update_app(self) -> None:
        app, _ = await self.new_app()
        updated = await self.store.update_app(app.app_id, name="renamed", webhook_url="http://h/x",
                                              dials_per_sec=2.5, burst=4, max_concurrent=9)
        self.assertEqual(
            (updated.name, updated.webhook_url, updated.dials_per_sec, updated.burst, updated.max_concurrent),
            ("renamed", "http://h/x", 2.5, 4, 9),
        )
        # Limits left UNSET stay; None clears an override.
        updated = await self.store.update_app(app.app_id, burst=None, enabled=False)
        self.assertEqual((updated.dials_per_sec, updated.burst, updated.enabled), (2.5, None, False))
        self.assertEqual(await self.store.update_app(app.app_id), updated)
        self.assertIsNone(await self.store.update_app("app_unknown", name="x"))
        self.assertIsNone(await self.store.update_app("app_unknown", dials_per_sec=UNSET))

    async def test_caller_ids(self) -> None:
        app, _ = await self.new_app()
        self.assertTrue(await self.store.add_caller_id(app.app_id, "0527121102"))
        self.assertTrue(await self.store.add_caller_id(app.app_id, "0527121102"), "adding twice is fine")
        self.assertEqual((await self.store.get_app(app.app_id)).caller_ids, {"0721234567", "0527121102"})
        self.assertTrue(await self.store.remove_caller_id(app.app_id, "0721234567"))
        self.assertFalse(await self.store.remove_caller_id(app.app_id, "0721234567"))
        self.assertEqual((await self.store.get_app(app.app_id)).caller_ids, {"0527121102"})
        self.assertFalse(await self.store.add_caller_id("app_unknown", "0527121102"))

    async def test_list_apps_oldest_first(self) -> None:
        a, _ = await self.store.create_app("a", "http://h/a", {"021234567"}, NOW + 2)
        b, _ = await self.store.create_app("b", "http://h/b", {"031234567", "041234567"}, NOW + 1)
        self.assertEqual(await self.store.list_apps(), [b, a])

    async def test_delete_app_takes_its_sessions_along(self) -> None:
        app, _ = await self.new_app()
        keep, _ = await self.new_app("keep")
        session = new_session(app.app_id)
        kept = new_session(keep.app_id)
        await self.store.create_session(session, NOW, idem(app.app_id, "k", session.session_uuid))
        await self.store.create_session(kept, NOW, None)
        self.assertTrue(await self.store.delete_app(app.app_id))
        self.assertFalse(await self.store.delete_app(app.app_id))
        self.assertIsNone(await self.store.get_app(app.app_id))
        self.assertIsNone(await self.store.get_session(session.session_uuid))
        self.assertEqual(await self.store.session_events(session.session_uuid), [])
        self.assertIsNone(await self.store.find_idempotency(app.app_id, "k", NOW))
        self.assertIsNotNone(await self.store.get_session(kept.session_uuid))


def idem(app_id: str, key: str, session_uuid: str, created_at: float = NOW, request_hash: str = "h1"):
    return IdempotencyRecord(
        app_id=app_id,
        key=key,
        request_hash=request_hash,
        session_uuid=session_uuid,
        response_status=202,
        response_body=f'{{"session_uuid":"{session_uuid}","status":"dialing"}}',
        created_at=created_at,
    )


class SessionTests(StoreTests):
    async def setUp(self) -> None:
        await super().setUp()
        self.app, _ = await self.new_app()

    async def test_create_session_writes_session_and_first_event(self) -> None:
        session = new_session(self.app.app_id)
        self.assertIsNone(await self.store.create_session(session, NOW + 0.5, None))
        # Committed: visible from another connection at once.
        self.assertEqual(self.query("SELECT status FROM sessions WHERE session_uuid = ?", (session.session_uuid,)),
                         [("dialing",)])
        self.assertEqual(await self.store.get_session(session.session_uuid), session)
        (event,) = await self.store.session_events(session.session_uuid)
        self.assertRegex(event.event_id, r"^evt_[0-9a-f]{32}$")
        self.assertEqual(
            (event.sequence, event.event, event.status, event.occurred_at, event.delivery_state, event.attempts,
             event.next_attempt_at, event.delivered_at, event.hangup_cause, event.duration_sec),
            (1, "session.dialing", "dialing", NOW + 0.5, "pending", 0, NOW + 0.5, None, None, None),
        )

    async def test_create_session_is_atomic(self) -> None:
        session = new_session(self.app.app_id)
        await self.store.create_session(session, NOW, None)
        # The same session again violates the primary key: nothing of the
        # second attempt (its idempotency record included) may remain.
        with self.assertRaises(self.integrity_error):
            await self.store.create_session(session, NOW, idem(self.app.app_id, "k", session.session_uuid))
        self.assertEqual(len(await self.store.session_events(session.session_uuid)), 1)
        self.assertIsNone(await self.store.find_idempotency(self.app.app_id, "k", NOW))
        # And a session whose app is unknown leaves no event behind.
        orphan = new_session("app_unknown")
        with self.assertRaises(self.integrity_error):
            await self.store.create_session(orphan, NOW, None)
        self.assertEqual(await self.store.session_events(orphan.session_uuid), [])

    async def test_idempotency_replay(self) -> None:
        first = new_session(self.app.app_id)
        record = idem(self.app.app_id, "order-17", first.session_uuid)
        self.assertIsNone(await self.store.create_session(first, NOW, record))
        self.assertEqual(await self.store.find_idempotency(self.app.app_id, "order-17", NOW + 10), record)
        second = new_session(self.app.app_id)
        replay = await self.store.create_session(
            second, NOW + 10, idem(self.app.app_id, "order-17", second.session_uuid, NOW + 10, "h2"))
        self.assertEqual(replay, record)
        self.assertIsNone(await self.store.get_session(second.session_uuid), "nothing written on replay")
        # Keys are per app.
        other, _ = await self.new_app("other")
        third = new_session(other.app_id)
        self.assertIsNone(await self.store.create_session(third, NOW, idem(other.app_id, "order-17",
                                                                           third.session_uuid)))

    async def test_idempotency_expires_after_a_day(self) -> None:
        first = new_session(self.app.app_id)
        await self.store.create_session(first, NOW, idem(self.app.app_id, "k", first.session_uuid))
        self.assertIsNotNone(await self.store.find_idempotency(self.app.app_id, "k", NOW + DAY - 1))
        self.assertIsNone(await self.store.find_idempotency(self.app.app_id, "k", NOW + DAY))
        later = new_session(self.app.app_id, started_at=NOW + DAY)
        fresh = idem(self.app.app_id, "k", later.session_uuid, NOW + DAY, "h2")
        self.assertIsNone(await self.store.create_session(later, NOW + DAY, fresh))
        self.assertEqual(await self.store.find_idempotency(self.app.app_id, "k", NOW + DAY), fresh)
        self.assertIsNotNone(await self.store.get_session(later.session_uuid))
        self.assertEqual(await self.store.prune_idempotency(NOW + 2 * DAY), 1)

    async def test_concurrent_same_key_creates_one_session(self) -> None:
        sessions = [new_session(self.app.app_id) for _ in range(10)]
        results = await gatherResults([
            self.store.create_session(s, NOW, idem(self.app.app_id, "same", s.session_uuid)) for s in sessions
        ])
        self.assertEqual(results.count(None), 1)
        winner = sessions[results.index(None)]
        self.assertTrue(all(r.session_uuid == winner.session_uuid for r in results if r is not None))
        self.assertEqual(await self.store.count_live_sessions(self.app.app_id), 1)

    async def test_record_transition_full_lifecycle(self) -> None:
        session = new_session(self.app.app_id)
        await self.store.create_session(session, NOW, None)
        uuid_ = session.session_uuid
        ringing = await self.store.record_transition(uuid_, "dialing", "ringing", NOW + 1)
        answered = await self.store.record_transition(uuid_, "ringing", "answered", NOW + 3)
        ended = await self.store.record_transition(uuid_, "answered", "ended", NOW + 65.6, "NORMAL_CLEARING")
        self.assertEqual([e.sequence for e in (ringing, answered, ended)], [2, 3, 4])
        self.assertEqual([e.event for e in (ringing, answered, ended)],
                         ["session.ringing", "call.answered", "call.hangup"])
        self.assertEqual((ended.hangup_cause, ended.duration_sec), ("NORMAL_CLEARING", 63))
        self.assertEqual((answered.hangup_cause, answered.duration_sec), (None, None))
        stored = await self.store.get_session(uuid_)
        self.assertEqual(
            (stored.status, stored.ringing_at, stored.early_media_at, stored.answered_at, stored.ended_at,
             stored.hangup_cause),
            ("ended", NOW + 1, None, NOW + 3, NOW + 65.6, "NORMAL_CLEARING"),
        )
        events = await self.store.session_events(uuid_)
        self.assertEqual([e.sequence for e in events], [1, 2, 3, 4])
        self.assertEqual(events[1:], [ringing, answered, ended])
        self.assertEqual(await self.store.live_sessions("acW68"), [])

    async def test_record_transition_is_compare_and_set(self) -> None:
        session = new_session(self.app.app_id)
        await self.store.create_session(session, NOW, None)
        uuid_ = session.session_uuid
        self.assertIsNotNone(await self.store.record_transition(uuid_, "dialing", "early_media", NOW + 1))
        self.assertIsNone(await self.store.record_transition(uuid_, "dialing", "early_media", NOW + 2),
                          "a repeated event is not recorded twice")
        self.assertIsNone(await self.store.record_transition(uuid_, "dialing", "ringing", NOW + 2),
                          "a late event does not move the session")
        self.assertIsNone(await self.store.record_transition("acW68-unknown", "dialing", "ringing", NOW))
        self.assertEqual([e.status for e in await self.store.session_events(uuid_)], ["dialing", "early_media"])
        self.assertEqual((await self.store.get_session(uuid_)).early_media_at, NOW + 1)

    async def test_hangup_before_answer_lasts_zero_seconds(self) -> None:
        session = new_session(self.app.app_id)
        await self.store.create_session(session, NOW, None)
        ended = await self.store.record_transition(session.session_uuid, "dialing", "ended", NOW + 30, "NO_ANSWER")
        self.assertEqual((ended.sequence, ended.status, ended.hangup_cause, ended.duration_sec),
                         (2, "ended", "NO_ANSWER", 0))

    async def test_backward_or_unknown_moves_are_refused(self) -> None:
        session = new_session(self.app.app_id)
        await self.store.create_session(session, NOW, None)
        await self.store.record_transition(session.session_uuid, "dialing", "answered", NOW)
        for from_status, to_status in [("answered", "ringing"), ("answered", "answered"), ("dialing", "dialing"),
                                       ("dialing", "bogus"), ("bogus", "ended")]:
            with self.assertRaises(ValueError, msg=f"{from_status} -> {to_status}"):
                await self.store.record_transition(session.session_uuid, from_status, to_status, NOW)
        self.assertEqual((await self.store.get_session(session.session_uuid)).status, "answered")

    async def test_concurrent_identical_transitions_record_one_event(self) -> None:
        session = new_session(self.app.app_id)
        await self.store.create_session(session, NOW, None)
        # A second store on the same file: two connections really compete.
        other = await self.open()
        calls = [
            (self.store if i % 2 else other).record_transition(session.session_uuid, "dialing", "answered", NOW + i)
            for i in range(20)
        ]
        results = await gatherResults(calls)
        recorded = [r for r in results if r is not None]
        self.assertEqual(len(recorded), 1)
        self.assertEqual(recorded[0].sequence, 2)
        events = await self.store.session_events(session.session_uuid)
        self.assertEqual([(e.sequence, e.status) for e in events], [(1, "dialing"), (2, "answered")])

    async def test_live_sessions_and_counts(self) -> None:
        a = new_session(self.app.app_id, started_at=NOW + 1)
        b = new_session(self.app.app_id, started_at=NOW)
        elsewhere = new_session(self.app.app_id, node_id="other")
        for s in (a, b, elsewhere):
            await self.store.create_session(s, s.started_at, None)
        self.assertEqual([s.session_uuid for s in await self.store.live_sessions("acW68")],
                         [b.session_uuid, a.session_uuid])
        self.assertEqual(await self.store.count_live_sessions(self.app.app_id), 3)
        await self.store.record_transition(b.session_uuid, "dialing", "ended", NOW + 5, "USER_BUSY")
        self.assertEqual([s.session_uuid for s in await self.store.live_sessions("acW68")], [a.session_uuid])
        self.assertEqual(await self.store.count_live_sessions(self.app.app_id), 2)
        self.assertEqual(await self.store.count_live_sessions("app_unknown"), 0)

    def counted(self, app_id: str) -> int:
        """The app's live sessions as the database counts them, for comparison."""
        return self.query(f"SELECT COUNT(*) FROM sessions WHERE app_id = '{app_id}' AND {LIVE}")[0][0]

    async def test_the_live_count_follows_every_way_a_session_starts_and_ends(self) -> None:
        other, _ = await self.new_app("other")
        sessions = [new_session(self.app.app_id) for _ in range(6)] + [new_session(other.app_id)]
        for session in sessions:
            await self.store.create_session(session, NOW, None)
        # A replayed key, a duplicate row and a lost compare-and-set count nothing.
        key = IdempotencyRecord(self.app.app_id, "k1", "h", sessions[0].session_uuid, 202, "{}", NOW)
        await self.store.create_session(new_session(self.app.app_id), NOW, key)
        self.assertIsNotNone(await self.store.create_session(new_session(self.app.app_id), NOW, key))
        with self.assertRaises(self.integrity_error):
            await self.store.create_session(sessions[1], NOW, None)
        await self.store.record_transition(sessions[1].session_uuid, "dialing", "ringing", NOW + 1)
        await self.store.record_transition(sessions[1].session_uuid, "ringing", "ended", NOW + 2, "NO_ANSWER")
        await self.store.record_transition(sessions[1].session_uuid, "ringing", "ended", NOW + 2, "NO_ANSWER")
        await self.store.record_transition(sessions[2].session_uuid, "dialing", "ended", NOW + 2, "USER_BUSY")
        self.assertEqual(await self.store.count_live_sessions(self.app.app_id), 5)
        self.assertEqual(await self.store.count_live_sessions(self.app.app_id), self.counted(self.app.app_id))
        self.assertEqual(await self.store.count_live_sessions(other.app_id), 1)

    async def test_the_migration_counts_the_live_sessions_already_stored(self) -> None:
        sessions = [new_session(self.app.app_id) for _ in range(3)]
        for session in sessions:
            await self.store.create_session(session, NOW, None)
        await self.store.record_transition(sessions[0].session_uuid, "dialing", "ended", NOW + 1, "USER_BUSY")
        self.store.close()
        # The database as migration 2 left it.
        self.query("ALTER TABLE apps DROP COLUMN live_sessions")
        self.query("UPDATE schema_version SET version = 2")
        store = await self.open()
        self.assertEqual(await store.count_live_sessions(self.app.app_id), 2)


class OutboxTests(StoreTests):
    async def setUp(self) -> None:
        await super().setUp()
        self.app, _ = await self.new_app()

    async def test_claim_takes_the_first_pending_event_of_each_session(self) -> None:
        early, late = new_session(self.app.app_id), new_session(self.app.app_id)
        await self.store.create_session(late, NOW + 2, None)
        await self.store.create_session(early, NOW + 1, None)
        await self.store.record_transition(early.session_uuid, "dialing", "ringing", NOW + 3)
        claimed = await self.store.claim_due_events(NOW + 10, 10, NOW + 300)
        self.assertEqual([(d.event.session_uuid, d.event.sequence) for d in claimed],
                         [(early.session_uuid, 1), (late.session_uuid, 1)])
        delivery = claimed[0]
        self.assertEqual(
            (delivery.app_id, delivery.webhook_url, delivery.signing_secrets, delivery.to_number,
             delivery.from_number, delivery.metadata_json),
            (self.app.app_id, self.app.webhook_url, (self.app.webhook_secret,), "0527121102", "0721234567",
             '{"order":17}'),
        )
        self.assertEqual(await self.store.claim_due_events(NOW + 299, 10, NOW + 600), [], "leased")
        again = await self.store.claim_due_events(NOW + 300, 10, NOW + 600)
        self.assertEqual(sorted(d.event.event_id for d in again), sorted(d.event.event_id for d in claimed),
                         "due again, with the same ids, when the lease runs out")

    async def test_record_attempts_numbers_them_and_frees_the_next_event(self) -> None:
        session = new_session(self.app.app_id)
        await self.store.create_session(session, NOW, None)
        await self.store.record_transition(session.session_uuid, "dialing", "answered", NOW + 1)
        (first,) = await self.store.claim_due_events(NOW + 1, 10, NOW + 300)
        event_id = first.event.event_id
        await self.store.record_attempts([AttemptResult(event_id, NOW + 2, 503, "HTTP 503", "retry", NOW + 5)])
        (event, _) = await self.store.session_events(session.session_uuid)
        self.assertEqual((event.attempts, event.delivery_state, event.last_error, event.next_attempt_at),
                         (1, "pending", "HTTP 503", NOW + 5))
        await self.store.record_attempts([
            AttemptResult(event_id, NOW + 5, 200, None, "delivered", None),
            AttemptResult("evt_unknown", NOW + 5, 200, None, "delivered", None),
        ])
        (event, answered) = await self.store.session_events(session.session_uuid)
        self.assertEqual((event.attempts, event.delivery_state, event.last_error, event.delivered_at),
                         (2, "delivered", None, NOW + 5))
        self.assertEqual(await self.store.webhook_attempts(event_id),
                         [(1, NOW + 2, 503, "HTTP 503", "retry"), (2, NOW + 5, 200, None, "delivered")])
        self.assertEqual([d.event.event_id for d in await self.store.claim_due_events(NOW + 5, 10, NOW + 300)],
                         [answered.event_id])
        self.assertEqual(await self.store.count_pending_events(), 1)


class ConcurrencyTests(StoreTests):
    """Two stores (two pools, as two gateway nodes) writing at once."""

    async def setUp(self) -> None:
        await super().setUp()
        self.app, _ = await self.new_app()
        self.other = await self.open()

    def node(self, i: int) -> Store:
        return self.store if i % 2 else self.other

    async def test_one_key_on_two_nodes_creates_one_session(self) -> None:
        sessions = [new_session(self.app.app_id) for _ in range(20)]
        results = await gatherResults([
            self.node(i).create_session(s, NOW, idem(self.app.app_id, "same", s.session_uuid))
            for i, s in enumerate(sessions)
        ])
        self.assertEqual(results.count(None), 1)
        winner = sessions[results.index(None)]
        self.assertTrue(all(r.session_uuid == winner.session_uuid for r in results if r is not None))
        self.assertEqual(await self.store.count_live_sessions(self.app.app_id), 1)
        self.assertEqual(self.query("SELECT COUNT(*) FROM session_events"), [(1,)])

    async def test_claims_on_two_nodes_are_disjoint(self) -> None:
        sessions = [new_session(self.app.app_id) for _ in range(40)]
        for s in sessions:
            await self.store.create_session(s, NOW, None)
        claims = await gatherResults([self.node(i).claim_due_events(NOW, 5, NOW + 300) for i in range(12)])
        claimed = [d.event.event_id for claim in claims for d in claim]
        self.assertEqual(len(claimed), len(set(claimed)), "an event was claimed twice")
        self.assertEqual(len(claimed), 40)

    async def test_racing_transitions_keep_sequences_contiguous(self) -> None:
        session = new_session(self.app.app_id)
        await self.store.create_session(session, NOW, None)
        steps = [("dialing", "ringing"), ("ringing", "early_media"), ("early_media", "answered"),
                 ("answered", "ended"), ("dialing", "answered"), ("ringing", "ended")]
        calls = [
            self.node(i).record_transition(session.session_uuid, from_status, to_status, NOW + i, "NORMAL_CLEARING")
            for i in range(5)
            for from_status, to_status in steps
        ]
        recorded = [e for e in await gatherResults(calls) if e is not None]
        events = await self.store.session_events(session.session_uuid)
        self.assertEqual([e.sequence for e in events], list(range(1, len(events) + 1)))
        self.assertEqual(events[1:], sorted(recorded, key=lambda e: e.sequence))
        statuses = [e.status for e in events]
        self.assertEqual(len(statuses), len(set(statuses)), "a status was recorded twice")


class AdoptionTests(StoreTests):
    """Cluster mode: the live sessions of a dead node move to survivors."""

    async def setUp(self) -> None:
        await super().setUp()
        self.app, _ = await self.new_app()
        self.other = await self.open()

    async def test_live_node_ids(self) -> None:
        for node in ("aaaaa", "bbbbb", "aaaaa"):
            await self.store.create_session(new_session(self.app.app_id, node_id=node), NOW, None)
        ended = new_session(self.app.app_id, node_id="ccccc")
        await self.store.create_session(ended, NOW, None)
        await self.store.record_transition(ended.session_uuid, "dialing", "ended", NOW, "USER_BUSY")
        self.assertEqual(await self.store.live_node_ids(), ["aaaaa", "bbbbb"])

    async def test_two_survivors_adopt_each_session_once(self) -> None:
        dead = [new_session(self.app.app_id, node_id="dead1", started_at=NOW + i) for i in range(30)]
        for session in dead:
            await self.store.create_session(session, NOW, None)
        ended = dead[0]
        await self.store.record_transition(ended.session_uuid, "dialing", "ended", NOW, "USER_BUSY")
        mine = new_session(self.app.app_id, node_id="alive")
        await self.store.create_session(mine, NOW, None)
        first, second = await gatherResults([
            self.store.adopt_live_sessions("dead1", "surv1"),
            self.other.adopt_live_sessions("dead1", "surv2"),
        ])
        adopted = [s.session_uuid for s in first + second]
        self.assertEqual(sorted(adopted), sorted(s.session_uuid for s in dead[1:]))
        self.assertEqual({s.node_id for s in first}, {"surv1"} if first else set())
        self.assertEqual({s.node_id for s in second}, {"surv2"} if second else set())
        self.assertEqual(await self.store.adopt_live_sessions("dead1", "surv1"), [])
        self.assertEqual((await self.store.get_session(ended.session_uuid)).node_id, "dead1")
        self.assertEqual((await self.store.get_session(mine.session_uuid)).node_id, "alive")

    async def test_ping(self) -> None:
        self.assertIsNone(await self.store.ping())


class SQLiteOnlyTests(StoreTests):
    async def test_wal_is_on(self) -> None:
        self.assertEqual(self.query("PRAGMA journal_mode"), [("wal",)])

    async def test_missing_directory_is_a_store_error(self) -> None:
        path = os.path.join(self.mktemp(), "dialgw.sqlite")
        with self.assertRaises(StoreError) as cm:
            await open_sqlite_store(reactor, path)
        self.assertIn("does not exist", str(cm.exception))
        self.assertFalse(os.path.exists(os.path.dirname(path)))

    async def test_not_a_database_is_a_store_error(self) -> None:
        path = os.path.join(os.path.dirname(self.path), "junk.sqlite")
        with open(path, "wb") as f:
            f.write(b"this is not sqlite" * 100)
        with self.assertRaises(StoreError) as cm:
            await open_sqlite_store(reactor, path)
        self.assertIn(f"cannot open database {path}", str(cm.exception))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgreSQLOnlyTests(StoreTests):
    """What only PostgreSQL has: a server, several writers, row locks."""

    async def test_unreachable_server_is_a_store_error_without_the_password(self) -> None:
        dsn = f"host=127.0.0.1 port={_free_port()} dbname=nowhere user=dialgw password=s3cret connect_timeout=5"
        with self.assertRaises(StoreError) as cm:
            await open_postgresql_store(reactor, dsn)
        message = str(cm.exception)
        self.assertIn("cannot open PostgreSQL database nowhere on 127.0.0.1:", message)
        self.assertNotIn("s3cret", message)
        self.assertNotIn("\n", message)

    async def test_a_malformed_dsn_is_refused_without_quoting_it(self) -> None:
        with self.assertRaises(StoreError) as cm:
            await open_postgresql_store(reactor, "host=127.0.0.1 password=two words")
        self.assertIn("not a libpq connection string", str(cm.exception))
        self.assertNotIn("words", str(cm.exception))

    async def test_missing_database_is_a_store_error(self) -> None:
        from psycopg2.extensions import make_dsn

        with self.assertRaises(StoreError) as cm:
            await open_postgresql_store(reactor, make_dsn(self.dsn, dbname="dialgw_test_missing"))
        self.assertIn("dialgw_test_missing", str(cm.exception))

    async def test_nodes_starting_at_once_migrate_once(self) -> None:
        dsn = pg.create_database(self)
        stores = await gatherResults([Deferred.fromCoroutine(open_postgresql_store(reactor, dsn))
                                      for _ in range(4)])
        for store in stores:
            self.addCleanup(store.close)
        self.assertEqual(pg.query(dsn, "SELECT version FROM schema_version"), [(SCHEMA_VERSION,)])
        app, key = await stores[0].create_app("a", "http://h/a", {"021234567"}, NOW)
        self.assertEqual(await stores[3].authenticate(app.app_id, key), app)

    # A plain connection holding a transaction open stands for another
    # node caught mid-write; the store must wait for it or skip its rows.

    def hold(self) -> Any:
        conn = pg.connect(self.dsn)
        self.addCleanup(conn.close)
        return conn

    async def wait_for_lock_wait(self) -> None:
        for _ in range(1000):
            (waiting,) = self.query("SELECT COUNT(*) FROM pg_stat_activity "
                                    "WHERE datname = current_database() AND wait_event_type = 'Lock'")
            if waiting[0]:
                return
            await deferLater(reactor, 0.01)
        self.fail("nothing waited for a lock")

    def insert_session_and_key(self, conn: Any, session: Session, key: str) -> IdempotencyRecord:
        record = idem(session.app_id, key, session.session_uuid)
        with conn.cursor() as cursor:
            cursor.execute(
                "INSERT INTO sessions (session_uuid, app_id, node_id, fs_node, channel_uuid, to_number, "
                "from_number, timeout_sec, max_duration_sec, metadata_json, status, started_at) "
                "VALUES (%s, %s, 'acW68', 'fs1', %s, '0527121102', '0721234567', 30, 3600, '{}', 'dialing', %s)",
                (session.session_uuid, session.app_id, session.channel_uuid, NOW),
            )
            cursor.execute(
                "INSERT INTO idempotency_keys (app_id, idempotency_key, request_hash, session_uuid, "
                "response_status, response_body, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (record.app_id, record.key, record.request_hash, record.session_uuid, record.response_status,
                 record.response_body, record.created_at),
            )
        return record

    async def test_a_request_racing_a_key_replays_the_winner_once_it_commits(self) -> None:
        app, _ = await self.new_app()
        holder = self.hold()
        winner = self.insert_session_and_key(holder, new_session(app.app_id), "k")
        loser = new_session(app.app_id)
        d = self.store.create_session(loser, NOW, idem(app.app_id, "k", loser.session_uuid))
        await self.wait_for_lock_wait()
        holder.commit()
        self.assertEqual(await d, winner)
        self.assertIsNone(await self.store.get_session(loser.session_uuid))

    async def test_a_key_committed_between_our_read_and_write_is_replayed_not_replaced(self) -> None:
        app, _ = await self.new_app()
        # An expired record of the key, which the next dial may replace.
        old = new_session(app.app_id, started_at=NOW - DAY)
        await self.store.create_session(old, NOW - DAY, idem(app.app_id, "k", old.session_uuid, NOW - DAY))
        holder = self.hold()
        with holder.cursor() as cursor:
            cursor.execute("DELETE FROM idempotency_keys WHERE session_uuid = %s", (old.session_uuid,))
        winner = self.insert_session_and_key(holder, new_session(app.app_id), "k")
        read = self.store._live_idempotency

        def read_then_let_the_other_commit(*args: Any) -> Any:
            found = read(*args)
            holder.commit()  # the other node commits right after our read
            return found

        self.patch(self.store, "_live_idempotency", read_then_let_the_other_commit)
        loser = new_session(app.app_id)
        self.assertEqual(await self.store.create_session(loser, NOW, idem(app.app_id, "k", loser.session_uuid)),
                         winner)
        self.assertIsNone(await self.store.get_session(loser.session_uuid))

    async def test_a_request_racing_a_key_stores_its_own_if_the_other_rolls_back(self) -> None:
        app, _ = await self.new_app()
        holder = self.hold()
        other = self.insert_session_and_key(holder, new_session(app.app_id), "k")
        mine = new_session(app.app_id)
        record = idem(app.app_id, "k", mine.session_uuid)
        d = self.store.create_session(mine, NOW, record)
        await self.wait_for_lock_wait()
        holder.rollback()
        self.assertIsNone(await d)
        self.assertEqual(await self.store.find_idempotency(app.app_id, "k", NOW), record)
        self.assertIsNone(await self.store.get_session(other.session_uuid))

    async def test_a_transition_waiting_on_another_node_loses_to_it(self) -> None:
        app, _ = await self.new_app()
        session = new_session(app.app_id)
        await self.store.create_session(session, NOW, None)
        holder = self.hold()
        with holder.cursor() as cursor:
            cursor.execute("UPDATE sessions SET status = 'answered' WHERE session_uuid = %s",
                           (session.session_uuid,))
        d = self.store.record_transition(session.session_uuid, "dialing", "answered", NOW + 1)
        await self.wait_for_lock_wait()
        holder.commit()
        self.assertIsNone(await d)
        self.assertEqual(len(await self.store.session_events(session.session_uuid)), 1)

    async def test_claim_skips_events_another_node_holds(self) -> None:
        app, _ = await self.new_app()
        held, free = new_session(app.app_id), new_session(app.app_id)
        await self.store.create_session(held, NOW, None)
        await self.store.create_session(free, NOW + 1, None)
        holder = self.hold()
        with holder.cursor() as cursor:
            cursor.execute("SELECT 1 FROM session_events WHERE session_uuid = %s FOR UPDATE",
                           (held.session_uuid,))
        claimed = await self.store.claim_due_events(NOW + 1, 10, NOW + 300)
        self.assertEqual([d.event.session_uuid for d in claimed], [free.session_uuid])
        holder.rollback()
        claimed = await self.store.claim_due_events(NOW + 1, 10, NOW + 300)
        self.assertEqual([d.event.session_uuid for d in claimed], [held.session_uuid])


def _rows(query: Any, table: str) -> list[tuple[Any, ...]]:
    return sorted(query(f"SELECT * FROM {table}"), key=repr)


class CopyTests(StoreTests):
    """`Store.copy_from_sqlite` into this (PostgreSQL) store."""

    async def sqlite_source(self) -> tuple[str, Store]:
        directory = self.mktemp()
        os.mkdir(directory)
        path = os.path.join(directory, "dialgw.sqlite")
        source = await open_sqlite_store(reactor, path)
        self.addCleanup(source.close)
        return path, source

    async def fill(self, store: Store) -> None:
        app, _ = await store.create_app("shop", "https://example.com/hook", {"0721234567", "021234567"}, NOW)
        await store.rotate_webhook_secret(app.app_id, NOW + 1)
        await store.update_app(app.app_id, dials_per_sec=2.5, burst=4)
        await store.create_app("other", "http://h/x", {"031234567"}, NOW + 2)
        for i in range(3):
            session = new_session(app.app_id, started_at=NOW + i)
            key = idem(app.app_id, f"k{i}", session.session_uuid) if i else None
            await store.create_session(session, NOW + i, key)
            await store.record_transition(session.session_uuid, "dialing", "answered", NOW + i + 0.25)
            if i == 2:
                await store.record_transition(session.session_uuid, "answered", "ended", NOW + 70, "NORMAL_CLEARING")
        for delivery in await store.claim_due_events(NOW + 100, 10, NOW + 400):
            await store.record_attempts([AttemptResult(delivery.event.event_id, NOW + 101, 200, None,
                                                       "delivered", None)])

    async def test_copy_reproduces_every_row(self) -> None:
        path, source = await self.sqlite_source()
        await self.fill(source)
        expected = await source.count_rows()
        source.close()
        copied = await self.store.copy_from_sqlite(path, batch=2)
        self.assertEqual(copied, expected)
        self.assertEqual(copied, {"apps": 2, "app_caller_ids": 3, "sessions": 3, "session_events": 7,
                                  "webhook_attempts": 3, "idempotency_keys": 2})

        def sqlite_query(sql: str) -> list[tuple[Any, ...]]:
            with sqlite3.connect(path) as db:
                return db.execute(sql).fetchall()

        for table in DATA_TABLES:
            self.assertEqual(_rows(self.query, table), _rows(sqlite_query, table), table)
        # And the copy is a working store: the next event follows on.
        (app,) = [a for a in await self.store.list_apps() if a.name == "shop"]
        live = await self.store.live_sessions("acW68")
        event = await self.store.record_transition(live[0].session_uuid, "answered", "ended", NOW + 200, "X")
        self.assertEqual(event.sequence, 3)
        self.assertEqual(app.dials_per_sec, 2.5)

    async def test_copy_refuses_a_target_holding_data(self) -> None:
        path, source = await self.sqlite_source()
        await self.fill(source)
        await self.new_app("already here")
        with self.assertRaises(StoreNotEmptyError) as cm:
            await self.store.copy_from_sqlite(path)
        self.assertIn("apps: 1", str(cm.exception))
        self.assertEqual((await self.store.count_rows())["sessions"], 0)

    async def test_a_failed_copy_writes_nothing(self) -> None:
        path, source = await self.sqlite_source()
        await self.fill(source)
        source.close()
        # A row whose parent is gone (possible in a file written without
        # foreign keys on) makes PostgreSQL refuse the copy half-way.
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO webhook_attempts VALUES ('evt_gone', 1, 0, NULL, NULL, 'failed')")
        with self.assertRaises(self.integrity_error):
            await self.store.copy_from_sqlite(path)
        self.assertEqual(set((await self.store.count_rows()).values()), {0})


# --- every mixin on each backend it applies to


class SQLiteOpenTests(OpenTests, SQLiteOnlyTests, SQLiteBackend):
    pass


class SQLiteAppTests(AppTests, SQLiteBackend):
    pass


class SQLiteSessionTests(SessionTests, SQLiteBackend):
    pass


class SQLiteOutboxTests(OutboxTests, SQLiteBackend):
    pass


class SQLiteAdoptionTests(AdoptionTests, SQLiteBackend):
    pass


class PostgreSQLAdoptionTests(AdoptionTests, PostgreSQLBackend):
    pass


class SQLiteConcurrencyTests(ConcurrencyTests, SQLiteBackend):
    pass


class PostgreSQLOpenTests(OpenTests, PostgreSQLOnlyTests, PostgreSQLBackend):
    pass


class PostgreSQLAppTests(AppTests, PostgreSQLBackend):
    pass


class PostgreSQLSessionTests(SessionTests, PostgreSQLBackend):
    pass


class PostgreSQLOutboxTests(OutboxTests, PostgreSQLBackend):
    pass


class PostgreSQLConcurrencyTests(ConcurrencyTests, PostgreSQLBackend):
    pass


class PostgreSQLCopyTests(CopyTests, PostgreSQLBackend):
    pass


class TimeFormatTests(SynchronousTestCase):
    def test_rfc3339(self) -> None:
        epoch = calendar.timegm((2026, 5, 6, 12, 34, 56))
        cases = [
            (epoch + 0.123, "2026-05-06T12:34:56.123Z"),
            (epoch, "2026-05-06T12:34:56.000Z"),
            (epoch + 0.9996, "2026-05-06T12:34:57.000Z"),
            (0, "1970-01-01T00:00:00.000Z"),
            (None, None),
        ]
        for value, expected in cases:
            self.assertEqual(rfc3339(value), expected, value)

    @given(st.floats(min_value=0, max_value=253402300799.0))
    def test_rfc3339_agrees_with_datetime(self, epoch: float) -> None:
        millis = int(round(epoch * 1000))
        moment = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
            milliseconds=millis)
        self.assertEqual(rfc3339(epoch), moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z")


class RowTests(SynchronousTestCase):
    """Rows are read by column name, never by position."""

    def cursor(self, sql: str) -> sqlite3.Cursor:
        db = sqlite3.connect(":memory:")
        self.addCleanup(db.close)
        return db.execute(sql)

    def test_rows_map_column_names_to_values(self) -> None:
        self.assertEqual(dbapi.rows(self.cursor("SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, 'y'")),
                         [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
        self.assertEqual(dbapi.row(self.cursor("SELECT 1 AS a, 'x' AS b")), {"a": 1, "b": "x"})
        self.assertIsNone(dbapi.row(self.cursor("SELECT 1 AS a WHERE 0")))

    def test_a_column_name_selected_twice_is_refused(self) -> None:
        with self.assertRaises(ValueError):
            dbapi.rows(self.cursor("SELECT 1 AS a, 2 AS a"))

    def test_records_are_built_by_name_whatever_the_column_order(self) -> None:
        session = new_session("app_x")
        row = {name: getattr(session, name) for name in reversed(SESSION_COLUMNS)}
        self.assertEqual(Session.from_row(row), session)
        record = idem("app_x", "k", session.session_uuid)
        self.assertEqual(IdempotencyRecord.from_row(dict(reversed(record.to_row().items()))), record)
        self.assertEqual(record.to_row()["idempotency_key"], "k")


class LiveIndexTests(SQLiteBackend):
    async def test_live_counts_search_the_status_index(self) -> None:
        plan = self.query(
            "EXPLAIN QUERY PLAN SELECT session_uuid FROM sessions WHERE node_id = ? AND " + LIVE, ("a",)
        )
        self.assertIn("(node_id=? AND status=?)", repr(plan))
