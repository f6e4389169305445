"""Group commit: concurrent store operations share one SQLite transaction.

SQLite has one writer and the store one connection, so operations run one
after the other anyway; what each of them costs on its own is the trip to
the database thread and back, a ``BEGIN`` and a ``COMMIT``. `GroupCommit`
queues the operations asked for while a transaction is running and runs
them all in the next one, each inside a ``SAVEPOINT``:

- an operation that raises is rolled back to its savepoint and fails on
  its own; the others in the batch go on and commit;
- every operation's Deferred fires only after the batch's ``COMMIT``, so
  a caller never acts on (or answers 202 for) a row that is not durable;
- if the batch as a whole fails (the ``COMMIT``, or an error after which
  SQLite rolled the whole transaction back, such as a full disk), nothing
  of it was written and every operation in it fails with that error.

A batch of one operation runs without a savepoint, exactly as it would
alone. PostgreSQL does not use this: its connection pool runs operations
side by side, and a shared transaction would hold row locks longer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from dialgw.store.dbapi import ConnectionPool, Cursor

T = TypeVar("T")

#: The most operations one transaction takes; the rest wait for the next.
MAX_BATCH = 256

_SAVEPOINT = "SAVEPOINT dialgw_op"
_RELEASE = "RELEASE dialgw_op"
_ROLLBACK_TO = "ROLLBACK TO dialgw_op"


@attrs.define
class _Operation:
    write: bool
    interaction: Callable[..., Any]
    args: tuple[Any, ...]
    done: Deferred[Any] = attrs.field(factory=Deferred)


class GroupCommit:
    """Runs store operations in shared transactions on an adbapi pool of one connection."""

    def __init__(self, pool: ConnectionPool, begin_read: str | None, begin_write: str | None,
                 max_batch: int = MAX_BATCH) -> None:
        self._pool = pool
        self._begin_read = begin_read
        self._begin_write = begin_write
        self._max_batch = max_batch
        self._queue: deque[_Operation] = deque()
        self._running = False
        #: Operations and transactions so far (for tests and benchmarks).
        self.operations = 0
        self.transactions = 0

    def run(self, write: bool, interaction: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run ``interaction(txn, *args)`` in the next transaction; fire after its commit."""
        operation = _Operation(write, interaction, args)
        self._queue.append(operation)
        if not self._running:
            self._next()
        return operation.done

    def _next(self) -> None:
        count = min(len(self._queue), self._max_batch)
        batch = [self._queue.popleft() for _ in range(count)]
        self._running = True
        self.operations += count
        self.transactions += 1
        self._pool.runInteraction(self._transaction, batch).addBoth(self._committed, batch)

    def _transaction(self, txn: Cursor, batch: list[_Operation]) -> list[tuple[bool, Any]]:
        """In the database thread: every operation of ``batch``, one transaction."""
        begin = self._begin_write if any(op.write for op in batch) else self._begin_read
        if begin is not None:
            txn.execute(begin)
        if len(batch) == 1:
            op = batch[0]
            return [(True, op.interaction(txn, *op.args))]
        outcomes: list[tuple[bool, Any]] = []
        for op in batch:
            txn.execute(_SAVEPOINT)
            try:
                result = op.interaction(txn, *op.args)
            except Exception:
                failure = Failure()  # type: ignore[no-untyped-call]  # twisted's Failure() is unannotated
                try:
                    txn.execute(_ROLLBACK_TO)
                    txn.execute(_RELEASE)
                except Exception:
                    # SQLite already rolled the whole transaction back (a
                    # full disk, say): nothing was written, the batch fails
                    # with the operation's own error.
                    failure.raiseException()
                outcomes.append((False, failure))
            else:
                txn.execute(_RELEASE)
                outcomes.append((True, result))
        return outcomes

    def _committed(self, outcome: list[tuple[bool, Any]] | Failure, batch: list[_Operation]) -> None:
        """In the reactor: start the next batch, then answer this one's callers."""
        self._running = False
        if self._queue:
            self._next()
        if isinstance(outcome, Failure):
            for op in batch:
                op.done.errback(outcome)
            return
        for op, (ok, value) in zip(batch, outcome, strict=True):
            if ok:
                op.done.callback(value)
            else:
                op.done.errback(value)
