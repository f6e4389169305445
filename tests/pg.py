"""A fresh PostgreSQL database for each test, on the local server.

The server is ``DIALGW_TEST_PG_DSN`` (a libpq connection string to a
database the tests may use to create and drop others; default
`DEFAULT_DSN`). Without psycopg2 or a reachable server the tests skip with
the reason, unless ``DIALGW_REQUIRE_PG=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
import re
import secrets
from typing import Any

from twisted.trial.unittest import SkipTest, TestCase

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"

#: Why the server cannot be used, once known (so later tests skip at once).
_unavailable: list[str] = []


def base_dsn() -> str:
    """The DSN of the database the tests connect to for creating others."""
    return os.environ.get("DIALGW_TEST_PG_DSN", DEFAULT_DSN)


def _give_up(reason: str) -> Any:
    if os.environ.get("DIALGW_REQUIRE_PG") == "1":
        raise AssertionError(f"DIALGW_REQUIRE_PG=1 but PostgreSQL cannot be used: {reason}")
    raise SkipTest(f"PostgreSQL not available: {reason}")


def connect(dsn: str, autocommit: bool = False) -> Any:
    """A plain psycopg2 connection (for the tests' own checks)."""
    import psycopg2

    conn = psycopg2.connect(dsn, connect_timeout=5)
    conn.autocommit = autocommit
    return conn


def create_database(testcase: TestCase) -> str:
    """Create ``dialgw_test_<random hex>``, dropped at the test's cleanup; its DSN.

    Call it before opening stores on it: cleanups run last-added first,
    so the stores close before the database is dropped.
    """
    if _unavailable:
        _give_up(_unavailable[0])
    try:
        import psycopg2
        from psycopg2.extensions import make_dsn
    except ImportError as e:
        _unavailable.append(f"psycopg2 is not installed ({e})")
        _give_up(_unavailable[0])
    base = base_dsn()
    name = "dialgw_test_" + secrets.token_hex(8)
    try:
        admin = connect(base, autocommit=True)
    except psycopg2.Error as e:
        _unavailable.append(f"cannot connect with {base!r}: {' '.join(str(e).split())}")
        _give_up(_unavailable[0])
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()
    testcase.addCleanup(drop_database, name)
    return make_dsn(base, dbname=name)


def drop_database(name: str) -> None:
    """Drop a database `create_database` made, ending its leftover connections."""
    if not re.fullmatch(r"dialgw_test_[0-9a-f]+", name):
        raise ValueError(f"not a test database: {name!r}")
    admin = connect(base_dsn(), autocommit=True)
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        admin.close()


def query(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement written with ``?`` placeholders in its own transaction; its rows."""
    conn = connect(dsn)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql.replace("?", "%s"), params)
            rows = cursor.fetchall() if cursor.description is not None else []
        conn.commit()
        return [tuple(row) for row in rows]
    finally:
        conn.close()
