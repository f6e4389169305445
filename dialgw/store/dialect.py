"""Where SQLite and PostgreSQL differ, kept in one place.

Queries are written once with ``?`` placeholders and portable SQL
(``INSERT ... ON CONFLICT``, ``COALESCE``); a dialect translates the
placeholders, names the column types, opens connections and starts
transactions.
"""

from __future__ import annotations

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

    def sql(self, text: str) -> str:
        """A query written with ``?`` placeholders, in this dialect."""
        if self.placeholder == "?":
            return text
        return text.replace("?", self.placeholder)

    def ddl(self, text: str) -> str:
        """A schema statement with ``{timestamp}``-style types filled in."""
        return text.format(**self.types)


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
