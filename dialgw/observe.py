"""Deferreds handed out to whoever waits for something, fired together.

`Observers` is for a thing that happens again and again (the requests in
flight drain, a write is recorded): each `when` waits for the next firing.
`OneShotObserver` is for a thing that happens once (the store is open):
asked after it happened, it answers at once with the same result.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

T = TypeVar("T")

__all__ = ["OneShotObserver", "Observers"]


class Observers(Generic[T]):
    """Waiters for the next firing; `fire` and `fail` release them all."""

    def __init__(self) -> None:
        self._waiters: list[Deferred[T]] = []

    def __len__(self) -> int:
        return len(self._waiters)

    def when(self) -> Deferred[T]:
        """A Deferred that fires with the result of the next `fire` or `fail`."""
        waiter: Deferred[T] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def fire(self, result: T) -> None:
        """Fire every waiter with ``result``; later `when` calls wait for the next firing."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(result)

    def fail(self, failure: Failure | BaseException) -> None:
        """Fail every waiter with ``failure``."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(failure)


class OneShotObserver(Generic[T]):
    """Fires once; every `when` (before or after) gets that one result."""

    def __init__(self) -> None:
        self._observers: Observers[T] = Observers()
        self._result: tuple[T] | None = None
        self._failure: Failure | BaseException | None = None

    @property
    def called(self) -> bool:
        """Whether `fire` or `fail` happened."""
        return self._result is not None or self._failure is not None

    def when(self) -> Deferred[T]:
        """A Deferred that fires with the one result (at once if known)."""
        if self._failure is not None:
            return fail(self._failure)
        if self._result is not None:
            return succeed(self._result[0])
        return self._observers.when()

    def fire(self, result: T) -> None:
        """Fire with ``result``; a second firing is an error."""
        self._settle()
        self._result = (result,)
        self._observers.fire(result)

    def fail(self, failure: Failure | BaseException) -> None:
        """Fail with ``failure``; a second firing is an error."""
        self._settle()
        self._failure = failure
        self._observers.fail(failure)

    def _settle(self) -> None:
        if self.called:
            raise RuntimeError("OneShotObserver fired twice")
