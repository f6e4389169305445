"""The store: every domain store in one class, and opening it on SQLite or PostgreSQL.

Each domain lives in a module of its own over the typed `StoreBase`
(`dialgw.store.base`), which owns the connection pool, the dialect and
group commit: `dialgw.store.apps`, `.sessions`, `.events`,
`.idempotency` and `.maintenance`.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.interfaces import IReactorCore, IReactorThreads

from dialgw.config import DatabaseSettings
from dialgw.store.base import SchemaTooNewError, StoreError
from dialgw.store.dbapi import connection_pool
from dialgw.store.dialect import (
    SQLITE,
    describe_dsn,
    postgresql,
    postgresql_pool_args,
    sqlite_pool_args,
    valid_dsn,
)
from dialgw.store.maintenance import MaintenanceStore
from dialgw.store.sessions import SessionsStore


class Store(SessionsStore, MaintenanceStore):
    """Apps, sessions, their events (the webhook outbox) and idempotency keys."""


async def open_sqlite_store(reactor: IReactorCore | IReactorThreads | Any, path: str) -> Store:
    """Open (creating if needed) and migrate the SQLite database at ``path``.

    The directory must exist: a missing one is a `StoreError`, as is a
    file that cannot be opened or a schema newer than this code.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise StoreError(f"cannot open database {path}: directory {directory} does not exist")
    args, kwargs = sqlite_pool_args(path)
    pool = connection_pool(SQLITE.dbapi_name, args, kwargs, reactor)
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
    pool = connection_pool(dialect.dbapi_name, args, kwargs, reactor)
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
