"""The database as a whole: migrating its schema, counting and copying its rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from dialgw.store.base import SchemaTooNewError, StoreBase, StoreError, StoreNotEmptyError
from dialgw.store.dbapi import Cursor
from dialgw.store.schema import DATA_TABLES, MIGRATIONS

log = Logger()


class MaintenanceStore(StoreBase):
    """The schema version and every table at once (``dialgw-admin``'s jobs)."""

    def migrate(self) -> Deferred[int]:
        """Bring the schema up to date; fire with the version now in force."""
        return self.run_interaction("migrate", self._migrate, write=True)

    def _migrate(self, txn: Cursor) -> int:
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
            version = row["version"]
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
        return self.run_interaction("count_rows", self._count_rows, write=False)

    def _count_rows(self, txn: Cursor) -> dict[str, int]:
        counts = {}
        for table in DATA_TABLES:
            row = self._one(txn, f"SELECT COUNT(*) AS n FROM {table}")
            counts[table] = int(row["n"]) if row else 0
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

        def copy(txn: Cursor) -> dict[str, int]:
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

        return self.run_interaction("copy_from_sqlite", copy, write=True)

    def _copy_table(self, txn: Cursor, source: sqlite3.Connection, table: str, batch: int) -> int:
        # Rows go over as they are: the same columns by name on both sides,
        # many rows to one INSERT.
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
