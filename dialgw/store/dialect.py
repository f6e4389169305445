"""Where SQLite and PostgreSQL differ, kept in one place.

Queries are written once with ``?`` placeholders and portable SQL
(``INSERT ... ON CONFLICT``, ``COALESCE``); a dialect translates the
placeholders, names the column types, opens connections, starts
transactions and adds the few clauses only one engine has (row locks, the
migration lock).
"""

from __future__ import annotations

import functools
import sqlite3
from typing import Any

import attrs


@attrs.frozen
class Dialect:
    """How to talk to one database engine through adbapi."""

    name: str
    dbapi_name: str
    placeholder: str
    #: DDL substitutions: ``{timestamp}`` (epoch seconds), ``{real}``.
    types: dict[str, str]
    #: Statements that open a transaction; None where the driver does it.
    begin_read: str | None
    begin_write: str | None
    integrity_error: type[Exception]
    #: Run first in the migration transaction so that two nodes starting at
    #: once migrate one after the other; None where ``begin_write`` already
    #: serialises writers (SQLite).
    migration_lock: str | None = None
    #: Whether ``SELECT ... FOR UPDATE SKIP LOCKED`` exists (several writers
    #: at once); SQLite has one writer at a time and no row locks.
    row_locks: bool = False
    #: Whether concurrent operations share one transaction
    #: (`dialgw.store.groupcommit`): where there is one connection and one
    #: writer anyway (SQLite).
    group_commit: bool = False

    def sql(self, text: str) -> str:
        """A query written with ``?`` placeholders, in this dialect."""
        if self.placeholder == "?":
            return text
        return text.replace("?", self.placeholder)

    def ddl(self, text: str) -> str:
        """A schema statement with ``{timestamp}``-style types filled in."""
        return text.format(**self.types)

    def skip_locked(self, alias: str) -> str:
        """A clause that locks the selected rows of ``alias``, skipping rows
        another transaction holds; empty where writers are serialised."""
        return f" FOR UPDATE OF {alias} SKIP LOCKED" if self.row_locks else ""


def _sqlite_open(conn: sqlite3.Connection) -> None:
    """Per-connection settings (run by adbapi's ``cp_openfun``)."""
    # busy_timeout first, so the other pragmas wait for a lock too.
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")


SQLITE = Dialect(
    name="sqlite",
    dbapi_name="sqlite3",
    placeholder="?",
    types={"timestamp": "REAL", "real": "REAL"},
    begin_read="BEGIN",
    # Take the write lock up front: a deferred transaction that reads and
    # then writes can fail with SQLITE_BUSY at once, without waiting, when
    # another process (dialgw-admin) wrote in between.
    begin_write="BEGIN IMMEDIATE",
    integrity_error=sqlite3.IntegrityError,
    group_commit=True,
)


def sqlite_pool_args(path: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments for ``ConnectionPool`` on a SQLite file."""
    return (path,), {
        "cp_min": 1,
        "cp_max": 1,
        "cp_openfun": _sqlite_open,
        "check_same_thread": False,
        # Autocommit at the driver level: transactions are opened explicitly
        # with SQLITE.begin_read / begin_write, so DDL is transactional too.
        "isolation_level": None,
    }


#: The key of the advisory lock held while migrating ("dialgw" in ASCII).
MIGRATION_LOCK_KEY = 0x6469616C6777


@functools.cache
def postgresql() -> Dialect:
    """The PostgreSQL dialect (psycopg2); ImportError without psycopg2.

    psycopg2 opens a transaction at the first statement and adbapi commits
    or rolls it back, so there is nothing to begin. Every connection runs
    at READ COMMITTED (see `postgresql_pool_args`), which the store's
    compare-and-set updates and row locks are written for.
    """
    import psycopg2

    return Dialect(
        name="postgresql",
        dbapi_name="psycopg2",
        placeholder="%s",
        types={"timestamp": "DOUBLE PRECISION", "real": "DOUBLE PRECISION"},
        begin_read=None,
        begin_write=None,
        integrity_error=psycopg2.IntegrityError,
        migration_lock=f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})",
        row_locks=True,
    )


def _postgresql_open(conn: Any) -> None:
    """Per-connection settings: whatever the server's default, READ COMMITTED.

    Under REPEATABLE READ a compare-and-set that loses a race would fail
    with a serialization error instead of matching no row.
    """
    conn.set_session(isolation_level="READ COMMITTED", autocommit=False)


def postgresql_pool_args(dsn: str, pool_size: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments for ``ConnectionPool`` on a PostgreSQL DSN."""
    return (dsn,), {
        "cp_min": 1,
        "cp_max": pool_size,
        "cp_openfun": _postgresql_open,
        # A connection the server dropped (restart, failover) is replaced
        # at the next interaction instead of failing every later one.
        "cp_reconnect": True,
    }


def valid_dsn(dsn: str) -> bool:
    """Whether libpq can parse ``dsn`` (its own error could quote a password)."""
    from psycopg2.extensions import parse_dsn

    try:
        parse_dsn(dsn)
    except Exception:
        return False
    return True


def describe_dsn(dsn: str) -> str:
    """``dbname on host:port`` of a libpq DSN, never its password."""
    try:
        from psycopg2.extensions import parse_dsn

        parts = parse_dsn(dsn)
    except Exception:
        return "the PostgreSQL database"
    where = parts.get("host", "the local socket")
    if "port" in parts:
        where += f":{parts['port']}"
    return f"PostgreSQL database {parts.get('dbname', parts.get('user', '?'))} on {where}"
