"""The typed base of every store: the connection pool, the dialect, group commit.

Each domain of the store (`dialgw.store.apps`, `.sessions`, `.events`,
`.idempotency`, `.maintenance`) is a class derived from `StoreBase`; the
`dialgw.store.store.Store` combines them. A domain runs its SQL only
through `StoreBase`: `run_interaction` makes each operation one named
transaction, and `_execute`, `_one` and `_all` write queries once with
``?`` placeholders and read rows by column name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

from dialgw.store import dbapi
from dialgw.store.dbapi import ConnectionPool, Cursor, Row
from dialgw.store.dialect import Dialect
from dialgw.store.groupcommit import GroupCommit

T = TypeVar("T")


class StoreError(Exception):
    """The database cannot be used (missing directory, unreadable, corrupt)."""


class SchemaTooNewError(StoreError):
    """The database was migrated by a newer dialgw than this one."""


class StoreNotEmptyError(StoreError):
    """A copy was asked into a database that already holds dialgw data."""


class StoreBase:
    """Owns the connection pool, the dialect and (SQLite) group commit.

    Every public method of a store returns a Deferred (callers ``await``
    it). Each runs as one database transaction in adbapi's thread; the
    Deferred fires after the commit. The code is the same on SQLite (one
    writer at a time) and on PostgreSQL (several gateway nodes writing at
    once); what differs is in `dialgw.store.dialect`.
    """

    def __init__(self, pool: ConnectionPool, dialect: Dialect) -> None:
        self._pool = pool
        self._dialect = dialect
        self._closed = False
        self.group_commit = (
            GroupCommit(pool, dialect.begin_read, dialect.begin_write) if dialect.group_commit else None
        )
        #: Transactions asked for so far, by name (for metrics and tests).
        self.interactions: Counter[str] = Counter()

    def run_interaction(self, name: str, interaction: Callable[..., T], *args: Any,
                        write: bool) -> Deferred[T]:
        """Run ``interaction(txn, *args)`` as the transaction ``name``.

        ``write`` says whether it may write (SQLite then takes the write
        lock up front). With group commit (SQLite) it runs as one savepoint
        of a shared transaction; either way the Deferred fires after the
        commit.
        """
        self.interactions[name] += 1
        if self.group_commit is not None:
            return self.group_commit.run(write, interaction, *args)
        begin = self._dialect.begin_write if write else self._dialect.begin_read

        def transaction(txn: Cursor) -> T:
            if begin is not None:
                txn.execute(begin)
            return interaction(txn, *args)

        return self._pool.runInteraction(transaction)

    def _execute(self, txn: Cursor, sql: str, params: Sequence[Any] = ()) -> None:
        """Run ``sql``, written with ``?`` placeholders, in this dialect."""
        txn.execute(self._dialect.sql(sql), params)

    def _one(self, txn: Cursor, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row ``sql`` selects, by column name, or None."""
        self._execute(txn, sql, params)
        return dbapi.row(txn)

    def _all(self, txn: Cursor, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row ``sql`` selects, by column name."""
        self._execute(txn, sql, params)
        return dbapi.rows(txn)

    def _insert(self, txn: Cursor, table: str, values: Mapping[str, Any], on_conflict: str = "") -> None:
        """Insert one row of ``values`` (column name to value) into ``table``."""
        self._execute(
            txn,
            f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join('?' * len(values))}){on_conflict}",
            tuple(values.values()),
        )

    def ping(self) -> Deferred[None]:
        """A trivial query: does the database answer?"""

        def ping(txn: Cursor) -> None:
            self._one(txn, "SELECT 1 AS one")

        return self.run_interaction("ping", ping, write=False)

    def close(self) -> None:
        """Close the connection and stop the database thread (idempotent)."""
        if not self._closed:
            self._closed = True
            self._pool.close()
