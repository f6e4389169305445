"""Tests for dialgw.store against real SQLite files (and dialgw.timefmt)."""

from __future__ import annotations

import calendar
import os
import sqlite3
import uuid

from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dialgw.store import (
    UNSET,
    IdempotencyRecord,
    SchemaTooNewError,
    Session,
    Store,
    StoreError,
    hash_api_key,
    open_sqlite_store,
)
from dialgw.store import store as store_module
from dialgw.store.schema import MIGRATIONS, SCHEMA_VERSION
from dialgw.timefmt import rfc3339

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


class StoreTestCase(TestCase):
    """Each test gets its own directory and an open store in it."""

    async def open(self, path: str | None = None) -> Store:
        store = await open_sqlite_store(reactor, path or self.path)
        self.addCleanup(store.close)
        return store

    async def setUp(self) -> None:
        directory = self.mktemp()
        os.mkdir(directory)
        self.path = os.path.join(directory, "dialgw.sqlite")
        self.store = await self.open()

    async def new_app(self, name: str = "shop", caller_ids: tuple[str, ...] = ("0721234567",)):
        return await self.store.create_app(name, "https://example.com/hook", set(caller_ids), NOW)


class OpenTests(StoreTestCase):
    async def test_migrations_are_idempotent_across_reopen(self) -> None:
        app, _ = await self.new_app()
        self.store.close()
        again = await self.open()
        again2 = await self.open()
        self.assertEqual((await again.get_app(app.app_id)).name, "shop")
        self.assertEqual((await again2.get_app(app.app_id)).name, "shop")
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("SELECT version FROM schema_version").fetchall(), [(SCHEMA_VERSION,)])

    async def test_new_migration_applies_on_reopen(self) -> None:
        self.store.close()
        self.patch(store_module, "MIGRATIONS", MIGRATIONS + (("CREATE TABLE extra (x INTEGER)",),))
        await self.open()
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("SELECT version FROM schema_version").fetchall(), [(SCHEMA_VERSION + 1,)])
        self.assertEqual(db.execute("SELECT COUNT(*) FROM extra").fetchone(), (0,))

    async def test_failed_migration_changes_nothing(self) -> None:
        self.store.close()
        self.patch(store_module, "MIGRATIONS", MIGRATIONS + (("CREATE TABLE extra (x INTEGER)", "NOT SQL"),))
        with self.assertRaises(StoreError):
            await open_sqlite_store(reactor, self.path)
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("SELECT version FROM schema_version").fetchall(), [(SCHEMA_VERSION,)])
        self.assertEqual(db.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchall(), [])

    async def test_wal_is_on(self) -> None:
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone(), ("wal",))

    async def test_newer_schema_is_refused_clearly(self) -> None:
        self.store.close()
        db = sqlite3.connect(self.path)
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
        db.commit()
        db.close()
        with self.assertRaises(SchemaTooNewError) as cm:
            await open_sqlite_store(reactor, self.path)
        self.assertIn(f"schema version {SCHEMA_VERSION + 1} is newer", str(cm.exception))

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


class AppTests(StoreTestCase):
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
        data = b""
        for name in os.listdir(os.path.dirname(self.path)):
            with open(os.path.join(os.path.dirname(self.path), name), "rb") as f:
                data += f.read()
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


class SessionTests(StoreTestCase):
    async def setUp(self) -> None:
        await super().setUp()
        self.app, _ = await self.new_app()

    async def test_create_session_writes_session_and_first_event(self) -> None:
        session = new_session(self.app.app_id)
        self.assertIsNone(await self.store.create_session(session, NOW + 0.5, None))
        # Committed: visible from another connection at once.
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        self.assertEqual(
            db.execute("SELECT status FROM sessions WHERE session_uuid = ?", (session.session_uuid,)).fetchall(),
            [("dialing",)],
        )
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
        with self.assertRaises(sqlite3.IntegrityError):
            await self.store.create_session(session, NOW, idem(self.app.app_id, "k", session.session_uuid))
        self.assertEqual(len(await self.store.session_events(session.session_uuid)), 1)
        self.assertIsNone(await self.store.find_idempotency(self.app.app_id, "k", NOW))
        # And a session whose app is unknown leaves no event behind.
        orphan = new_session("app_unknown")
        with self.assertRaises(sqlite3.IntegrityError):
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
