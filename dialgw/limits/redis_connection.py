"""One Redis connection, shared by the limiter and cluster presence.

txredisapi is imported only when the first connection is made, as it
imports the global reactor. Every command gets its own deadline
(txredisapi waits for a reply as long as it takes). Any failure -- no
connection, a timeout, an error reply -- is an outage: logged once,
`degraded` turns True, the connection is dropped, and the next command
connects again. The first answer after an outage ends it (logged once too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from dialgw.observe import Observers

log = Logger()

T = TypeVar("T")

#: How long one Redis command may take before it counts as an outage.
COMMAND_TIMEOUT_SEC = 0.25


@attrs.frozen
class RedisAddress:
    """Where Redis is, from a ``redis://``, ``rediss://`` or ``unix://`` URL."""

    host: str | None
    port: int
    unix_path: str | None
    db: int | None
    username: str | None
    password: str | None
    tls: bool

    def describe(self) -> str:
        """Where, for logs: never the password."""
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db or 0}"


def parse_redis_url(url: str) -> RedisAddress:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme == "unix":
        db_text = query.get("db", [None])[0]
        password = query.get("password", [None])[0]
        return RedisAddress(None, 0, parts.path, int(db_text) if db_text else None,
                            None, password, False)
    path = parts.path.strip("/")
    return RedisAddress(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        unix_path=None,
        db=int(path) if path else None,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme == "rediss",
    )


def _quietly(d: Deferred[Any] | None) -> None:
    if d is not None:
        d.addErrback(lambda failure: None)


def _failure(error: BaseException | None = None) -> Failure:
    """The current exception (or ``error``) as a Failure (Failure is untyped in Twisted)."""
    failure: Failure = Failure(error)  # type: ignore[no-untyped-call]
    return failure


class RedisConnection(Service):
    """The gateway's Redis connection (the ``redis`` service of the tree).

    Starting it tries Redis once (an unreachable Redis is logged, never
    fatal); stopping it closes the connection.
    """

    def __init__(
        self,
        redis_url: str,
        clock: IReactorTime,
        *,
        timeout: float = COMMAND_TIMEOUT_SEC,
        reactor: Any = None,
    ) -> None:
        self._address = parse_redis_url(redis_url)
        self.clock = clock
        self._timeout = timeout
        #: For connecting only; None: the global reactor, imported when connecting.
        self._reactor = reactor
        self._factory: Any = None  # a connected txredisapi.RedisFactory
        self._handler: Any = None  # its command interface
        self._attempt: Any = None  # a factory still connecting
        self._waiters: Observers[Any] = Observers()
        self._degraded = False
        #: When the last command failed (an outage began or went on).
        self.failed_at = 0.0
        self.closed = False

    @property
    def degraded(self) -> bool:
        """True from a failed command until the next one that succeeds."""
        return self._degraded

    @property
    def where(self) -> str:
        return self._address.describe()

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # untyped in Twisted
        self.closed = False
        self.ping()

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]  # untyped in Twisted
        return self.close()

    def ping(self) -> Deferred[None]:
        """Try Redis once; fires when it answers or is known not to (never fails)."""
        d: Deferred[None] = self.run(lambda redis: redis.ping())
        return d.addCallbacks(lambda _: None, lambda _: None)

    def run(self, command: Callable[[Any], Deferred[T]]) -> Deferred[T]:
        """Run ``command(connection)`` with the deadline; a failure is an outage, and raises."""

        async def go() -> T:
            if self.closed:
                raise ConnectionError(f"Redis {self.where}: closed")
            try:
                handler = await self._connection()
                result: T = await self._timed(command(handler))
            except Exception:
                self._outage(_failure())
                raise
            self._recovered()
            return result

        return Deferred.fromCoroutine(go())

    def close(self) -> Deferred[None]:
        self.closed = True
        self._drop()
        return succeed(None)

    def _timed(self, d: Deferred[T]) -> Deferred[T]:
        # txredisapi waits for a reply as long as it takes: every call gets its own deadline.
        return d.addTimeout(self._timeout, self.clock)

    # -- outage and recovery ----------------------------------------------------

    def _outage(self, failure: Failure) -> None:
        self._drop()
        self.failed_at = self.clock.seconds()
        if not self._degraded and not self.closed:
            self._degraded = True
            log.warn(
                "Redis {where} unreachable ({error}): rate limits are this node's own until it answers",
                where=self.where,
                error=failure.getErrorMessage() or type(failure.value).__name__,
            )

    def _lost(self, factory: Any) -> None:
        if factory is self._factory and not self.closed:
            self._outage(_failure(ConnectionError("connection lost")))

    def _recovered(self) -> None:
        if self._degraded:
            self._degraded = False
            log.info("Redis {where} answers again: rate limits are shared again", where=self.where)

    # -- the connection ---------------------------------------------------------

    def _connection(self) -> Deferred[Any]:
        """The connected command interface; connects (one attempt at a time) if needed."""
        if self._handler is not None:
            return succeed(self._handler)
        waiter = self._waiters.when()
        if self._attempt is None:
            self._connect()
        return waiter

    def _connect(self) -> None:
        import txredisapi

        address = self._address
        factory = txredisapi.RedisFactory(
            address.describe(), address.db, 1, isLazy=False,
            password=address.password, username=address.username,
        )
        # One connection, no reconnecting of its own: a lost connection is an
        # outage, and we probe again on our clock.
        factory.reconnect = False
        self._attempt = factory
        ready = factory.deferred
        ready.addTimeout(self._timeout, self.clock)

        def connected(handler: Any) -> None:
            if self._attempt is not factory:
                # Dropped (an outage, or close()) while it was connecting.
                _quietly(factory.disconnect())
                return
            self._attempt = None
            self._factory, self._handler = factory, handler
            # A lost connection is an outage now, not at the next dial.
            factory.waitForEmptyPool().addCallback(lambda _: self._lost(factory))
            self._fire_waiters(handler)

        def failed(failure: Failure) -> None:
            _quietly(factory.disconnect())
            if self._attempt is factory:
                self._attempt = None
                self._fire_waiters(failure)

        ready.addCallbacks(connected, failed)
        try:
            factory.startConnecting(self._endpoint())
        except Exception:
            if not ready.called:
                ready.errback()

    def _endpoint(self) -> IStreamClientEndpoint:
        from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS

        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        address = self._address
        connect_timeout = max(1.0, self._timeout * 4)
        if address.unix_path is not None:
            # UNIXClientEndpoint is untyped in Twisted.
            unix: IStreamClientEndpoint = UNIXClientEndpoint(  # type: ignore[no-untyped-call]
                reactor, address.unix_path, timeout=connect_timeout
            )
            return unix
        host = address.host or "127.0.0.1"
        endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, host, address.port, timeout=connect_timeout)
        if address.tls:
            from twisted.internet.ssl import optionsForClientTLS

            endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
        return endpoint

    def _fire_waiters(self, result: Any) -> None:
        if isinstance(result, Failure):
            self._waiters.fail(result)
        else:
            self._waiters.fire(result)

    def _drop(self) -> None:
        """Close the connection (and any attempt); the next probe opens a new one."""
        for factory in (self._factory, self._attempt):
            if factory is not None:
                _quietly(factory.disconnect())
        self._factory = self._handler = self._attempt = None
        self._fire_waiters(_failure(ConnectionError(f"Redis {self.where}: connection dropped")))
