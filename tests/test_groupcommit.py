"""Tests for dialgw.store.groupcommit on a real SQLite file through adbapi."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from twisted.enterprise import adbapi
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

from dialgw.store import open_sqlite_store
from dialgw.store.dialect import SQLITE, sqlite_pool_args
from dialgw.store.groupcommit import GroupCommit
from tests.test_store import new_session

NOW = 1_800_000_000.0


class GroupCommitTests(TestCase):
    def setUp(self) -> None:
        directory = self.mktemp()
        os.mkdir(directory)
        self.path = os.path.join(directory, "g.sqlite")
        with sqlite3.connect(self.path) as db:
            db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
        args, kwargs = sqlite_pool_args(self.path)
        self.pool = adbapi.ConnectionPool(SQLITE.dbapi_name, *args, cp_reactor=reactor, **kwargs)
        self.addCleanup(self.pool.close)
        self.group = GroupCommit(self.pool, SQLITE.begin_read, SQLITE.begin_write)

    def committed(self) -> dict[str, int]:
        """What another connection sees: only committed rows."""
        with sqlite3.connect(self.path) as db:
            return dict(db.execute("SELECT k, v FROM t"))

    def insert(self, key: str, value: int = 1):
        def insert(txn: Any) -> str:
            txn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (key, value))
            return key

        return self.group.run(True, insert)

    async def test_concurrent_operations_share_transactions(self) -> None:
        keys = await gatherResults([self.insert(f"k{n}") for n in range(60)])
        self.assertEqual(keys, [f"k{n}" for n in range(60)])
        self.assertEqual(len(self.committed()), 60)
        self.assertEqual(self.group.operations, 60)
        # The first runs alone; the 59 queued meanwhile share the next one.
        self.assertEqual(self.group.transactions, 2)

    async def test_batches_are_bounded(self) -> None:
        self.group = GroupCommit(self.pool, SQLITE.begin_read, SQLITE.begin_write, max_batch=4)
        await gatherResults([self.insert(f"k{n}") for n in range(10)])
        self.assertEqual(self.group.transactions, 4)  # 1, then 4, 4 and 1
        self.assertEqual(len(self.committed()), 10)

    async def test_a_failing_operation_fails_alone(self) -> None:
        running = self.insert("taken", 1)  # the operations below queue behind it

        def insert_two(txn: Any) -> None:
            # The first insert succeeds, the second violates the key: the
            # savepoint takes both back.
            txn.execute("INSERT INTO t (k, v) VALUES ('half', 1)")
            txn.execute("INSERT INTO t (k, v) VALUES ('taken', 2)")

        results = [self.insert("a"), self.group.run(True, insert_two), self.insert("b")]
        await running
        self.assertEqual(await results[0], "a")
        with self.assertRaises(sqlite3.IntegrityError):
            await results[1]
        self.assertEqual(await results[2], "b")
        self.assertEqual(self.committed(), {"taken": 1, "a": 1, "b": 1})
        self.assertEqual(self.group.transactions, 2)

    async def test_callers_are_answered_only_after_the_commit(self) -> None:
        running = self.insert("first")
        seen: list[dict[str, int]] = []
        batch = [self.insert(f"k{n}").addCallback(lambda _: seen.append(self.committed())) for n in range(5)]
        await gatherResults([running, *batch])
        self.assertEqual(self.group.transactions, 2)
        # Each caller, as it was answered, could already read every row of
        # its batch from another connection.
        self.assertEqual([len(rows) for rows in seen], [6] * 5)

    async def test_a_transaction_lost_as_a_whole_fails_every_operation(self) -> None:
        running = self.insert("first")

        def lose_the_transaction(txn: Any) -> None:
            # What SQLite does itself on a full disk or an I/O error: the
            # whole transaction is rolled back, then the error is raised.
            txn.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")

        results = [self.insert("a"), self.group.run(True, lose_the_transaction), self.insert("b")]
        self.assertEqual(await running, "first")
        for result in results:
            with self.assertRaises(sqlite3.OperationalError) as raised:
                await result
            self.assertEqual(str(raised.exception), "database or disk is full")
        self.assertEqual(self.committed(), {"first": 1})
        # The next batch starts clean.
        self.assertEqual(await self.insert("c"), "c")
        self.assertEqual(self.committed(), {"first": 1, "c": 1})

    async def test_reads_see_the_writes_queued_before_them(self) -> None:
        def read(txn: Any) -> list[str]:
            txn.execute("SELECT k FROM t ORDER BY k")
            return [k for (k,) in txn.fetchall()]

        results = await gatherResults(
            [self.insert("first"), self.insert("a"), self.group.run(False, read), self.insert("b")]
        )
        self.assertEqual(results[2], ["a", "first"])
        self.assertEqual(self.group.transactions, 2)


class StoreGroupCommitTests(TestCase):
    async def test_the_sqlite_store_commits_concurrent_sessions_together(self) -> None:
        directory = self.mktemp()
        os.mkdir(directory)
        store = await open_sqlite_store(reactor, os.path.join(directory, "dialgw.sqlite"))
        self.addCleanup(store.close)
        app, _ = await store.create_app("g", "http://127.0.0.1:9/h", ["0721234567"], NOW)
        before = store.group_commit.transactions
        sessions = [new_session(app.app_id) for _ in range(40)]
        await gatherResults([store.create_session(s, NOW, None) for s in sessions])
        self.assertLessEqual(store.group_commit.transactions - before, 2)
        for session in sessions:
            self.assertEqual((await store.get_session(session.session_uuid)).status, "dialing")
            self.assertEqual([e.sequence for e in await store.session_events(session.session_uuid)], [1])
