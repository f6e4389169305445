"""The typed face of adbapi and DB-API: a cursor, its rows, a connection pool.

``twisted.enterprise.adbapi`` carries no annotations; the store sees it
only through these protocols, and builds its pool with `connection_pool`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred

T = TypeVar("T")

#: One result row, by column name (the name a query selects it as).
Row = Mapping[str, Any]


class Cursor(Protocol):
    """A DB-API cursor bound to one connection (adbapi's ``Transaction``)."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Sequence[Sequence[Any]] | None: ...

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> object: ...

    def fetchone(self) -> Sequence[Any] | None: ...

    def fetchall(self) -> Sequence[Sequence[Any]]: ...


class ConnectionPool(Protocol):
    """What the store uses of ``adbapi.ConnectionPool``."""

    def runInteraction(self, interaction: Callable[..., T], *args: Any) -> Deferred[T]: ...

    def close(self) -> None: ...


def connection_pool(dbapi_name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                    reactor: object) -> ConnectionPool:
    """An ``adbapi.ConnectionPool`` of the DB-API module ``dbapi_name``, run by ``reactor``."""
    pool = cast(Callable[..., ConnectionPool], adbapi.ConnectionPool)
    return pool(dbapi_name, *args, cp_reactor=reactor, **kwargs)


def rows(cursor: Cursor) -> list[Row]:
    """The rows of the cursor's last query, each a mapping of column names to values."""
    names = column_names(cursor)
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def row(cursor: Cursor) -> Row | None:
    """The next row of the cursor's last query by column name, or None."""
    names = column_names(cursor)
    values = cursor.fetchone()
    return dict(zip(names, values, strict=True)) if values is not None else None


def column_names(cursor: Cursor) -> tuple[str, ...]:
    """The column names of the cursor's last query; each must be unique, or a
    mapping would silently keep only the last of two."""
    if cursor.description is None:
        raise ValueError("the last statement returned no rows")
    names = tuple([column[0] for column in cursor.description])
    if len(set(names)) != len(names):
        raise ValueError(f"a query selects one column name twice: {names}")
    return names
