"""The shared limiter: buckets in Redis, checked and taken atomically by a Lua script.

Every gateway node runs the same script against the same keys, so a burst
of 10 is 10 across all nodes. The script takes the time from Redis's own
``TIME``: the nodes' clocks need not agree. Its keys expire by themselves
(a missing bucket is a full one). txredisapi is imported only when the
first connection is made, as it imports the global reactor.

Redis unreachable, slow (each call has its own timeout) or answering with
an error: the dial is decided by the local fallback limiter instead, the
outage is logged once, `degraded` turns True, and at most every
``probe_interval`` seconds one dial tries Redis again. The first answer
from Redis ends the outage (logged once too). A dial never fails because
of Redis.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dialgw.limits.memory import MemoryLimiter
from dialgw.limits.policy import AppLimits, Decision

log = Logger()

#: The decision of `MemoryLimiter.decide`, line for line, with Redis's TIME.
#: Lua numbers returned to Redis become integers, so it returns only whole
#: numbers: {allowed, limit, retry_after, remaining, reset}.
SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_concurrent = tonumber(ARGV[3])
local cooldown_after = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local cooldown_sec = tonumber(ARGV[6])
local live = tonumber(ARGV[7])
local take = ARGV[8] == '1'
local EPSILON = 1e-6

-- Redis's clock, not the gateways': their clocks need not agree.
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000

local function stamp(seconds) return string.format('%.6f', seconds) end

local tokens = burst
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
if state[1] and state[2] then
  local elapsed = math.max(0, now - tonumber(state[2]))
  tokens = math.min(burst, tonumber(state[1]) + elapsed * rate)
end

local function until_token() return math.max(0, (1 - tokens) / rate) end
local function answer(limit, wait)
  local remaining = math.max(0, math.floor(tokens + EPSILON))
  local reset = math.max(0, math.ceil((burst - tokens) / rate - EPSILON))
  if not limit then return {1, '', 0, remaining, reset} end
  return {0, limit, math.max(1, math.ceil(wait - EPSILON)), remaining, reset}
end

local cooldown_until = tonumber(redis.call('GET', KEYS[3]) or '0')
if cooldown_until > now then
  -- Refusals during a cooldown neither extend it nor count toward the next.
  return answer('cooldown', math.max(cooldown_until - now, until_token()))
end
local limit = false
if take and live >= max_concurrent then
  limit = 'max_concurrent'
elseif tokens + EPSILON < 1 then
  limit = 'dials_per_sec'
end
if not take then return answer(limit, until_token()) end

if not limit then
  tokens = tokens - 1
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', stamp(now))
  -- Gone once full again: a missing bucket is a full one.
  redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
  return answer(false)
end

-- A refusal takes no token. Keep the latest cooldown_after + 1 refusal times.
redis.call('RPUSH', KEYS[2], stamp(now))
redis.call('LTRIM', KEYS[2], -(cooldown_after + 1), -1)
redis.call('PEXPIRE', KEYS[2], math.ceil(window * 1000))
if redis.call('LLEN', KEYS[2]) > cooldown_after then
  local oldest = tonumber(redis.call('LINDEX', KEYS[2], 0))
  if now - oldest < window then
    redis.call('SET', KEYS[3], stamp(now + cooldown_sec), 'PX', math.ceil(cooldown_sec * 1000))
    redis.call('DEL', KEYS[2])
    return answer('cooldown', math.max(cooldown_sec, until_token()))
  end
end
return answer(limit, until_token())
"""

SCRIPT_SHA1 = hashlib.sha1(SCRIPT.encode("utf-8")).hexdigest()


def keys_for(app_id: str) -> list[str]:
    """The app's three keys; the ``{app_id}`` hash tag keeps them in one Redis Cluster slot."""
    prefix = f"dialgw:ratelimit:{{{app_id}}}"
    return [f"{prefix}:bucket", f"{prefix}:refusals", f"{prefix}:cooldown"]


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


def _decision(reply: Any, limits: AppLimits) -> Decision:
    allowed, limit, retry_after, remaining, reset = reply
    return Decision(
        allowed=bool(int(allowed)),
        limit=(limit.decode() if isinstance(limit, bytes) else limit) or None,
        retry_after=int(retry_after),
        header_limit=limits.burst,
        remaining=int(remaining),
        reset=int(reset),
    )


def _quietly(d: Deferred | None) -> None:
    if d is not None:
        d.addErrback(lambda failure: None)


class RedisLimiter:
    """Limits shared by every gateway node through Redis, with a local fallback."""

    def __init__(
        self,
        redis_url: str,
        clock: IReactorTime,
        fallback: MemoryLimiter,
        timeout: float = 0.25,
        *,
        probe_interval: float = 3.0,
        reactor: Any = None,
    ) -> None:
        self._address = parse_redis_url(redis_url)
        self._clock = clock
        self._fallback = fallback
        self._timeout = timeout
        self._probe_interval = probe_interval
        #: For connecting only; None: the global reactor, imported when connecting.
        self._reactor = reactor
        self._factory: Any = None  # a connected txredisapi.RedisFactory
        self._handler: Any = None  # its command interface
        self._attempt: Any = None  # a factory still connecting
        self._waiters: list[Deferred] = []
        self._degraded = False
        self._probing = False
        self._next_probe_at = 0.0
        self._closed = False

    @property
    def degraded(self) -> bool:
        return self._degraded

    @property
    def where(self) -> str:
        return self._address.describe()

    def start(self) -> Deferred[None]:
        async def ping() -> None:
            try:
                handler = await self._connection()
                await self._timed(handler.ping())
            except Exception:
                self._outage(Failure())
            else:
                self._recovered()

        return Deferred.fromCoroutine(ping())

    def check(self, app_id: str, limits: AppLimits, live_sessions: int) -> Deferred[Decision]:
        return Deferred.fromCoroutine(self._decide(app_id, limits, live_sessions, True))

    def peek(self, app_id: str, limits: AppLimits) -> Deferred[Decision]:
        return Deferred.fromCoroutine(self._decide(app_id, limits, 0, False))

    def run(self, command: Callable[[Any], Deferred]) -> Deferred:
        """Run ``command(connection)`` on this Redis connection, with the deadline.

        For the other users of the same Redis (cluster presence): a failure
        counts as an outage like a failed limit check, and raises.
        """

        async def go() -> Any:
            if self._closed:
                raise ConnectionError(f"Redis {self.where}: closed")
            try:
                handler = await self._connection()
                result = await self._timed(command(handler))
            except Exception:
                self._outage(Failure())
                raise
            self._recovered()
            return result

        return Deferred.fromCoroutine(go())

    def close(self) -> Deferred[None]:
        self._closed = True
        self._drop()
        return succeed(None)

    # -- deciding ---------------------------------------------------------------

    async def _decide(self, app_id: str, limits: AppLimits, live_sessions: int, take: bool) -> Decision:
        if self._closed or (self._degraded and (self._probing or self._clock.seconds() < self._next_probe_at)):
            return self._fallback.decide(app_id, limits, live_sessions, take)
        probe = self._degraded
        self._probing = self._probing or probe
        try:
            args = [
                repr(float(limits.dials_per_sec)), str(limits.burst), str(limits.max_concurrent),
                str(limits.cooldown_after), repr(float(limits.cooldown_window_sec)),
                repr(float(limits.cooldown_sec)), str(live_sessions), "1" if take else "0",
            ]
            decision = _decision(await self._evaluate(keys_for(app_id), args), limits)
        except Exception:
            self._outage(Failure())
            return self._fallback.decide(app_id, limits, live_sessions, take)
        finally:
            if probe:
                self._probing = False
        self._recovered()
        return decision

    async def _evaluate(self, keys: list[str], args: list[str]) -> Any:
        from txredisapi import ScriptDoesNotExist

        handler = await self._connection()
        try:
            return await self._timed(handler.evalsha(SCRIPT_SHA1, keys, args))
        except ScriptDoesNotExist:
            # NOSCRIPT: this server has not seen the script yet (or flushed it).
            return await self._timed(handler.eval(SCRIPT, keys, args))

    def _timed(self, d: Deferred) -> Deferred:
        # txredisapi waits for a reply as long as it takes: every call gets its own deadline.
        return d.addTimeout(self._timeout, self._clock)

    # -- outage and recovery ----------------------------------------------------

    def _outage(self, failure: Failure) -> None:
        self._drop()
        self._next_probe_at = self._clock.seconds() + self._probe_interval
        if not self._degraded and not self._closed:
            self._degraded = True
            log.warn(
                "Redis {where} unreachable ({error}): rate limits are this node's own until it answers",
                where=self.where,
                error=failure.getErrorMessage() or failure.type.__name__,
            )

    def _lost(self, factory: Any) -> None:
        if factory is self._factory and not self._closed:
            self._outage(Failure(ConnectionError("connection lost")))

    def _recovered(self) -> None:
        if self._degraded:
            self._degraded = False
            log.info("Redis {where} answers again: rate limits are shared again", where=self.where)

    # -- the connection ---------------------------------------------------------

    def _connection(self) -> Deferred:
        """The connected command interface; connects (one attempt at a time) if needed."""
        if self._handler is not None:
            return succeed(self._handler)
        waiter: Deferred = Deferred()
        self._waiters.append(waiter)
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
        ready.addTimeout(self._timeout, self._clock)

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

    def _endpoint(self) -> Any:
        from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS

        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        address = self._address
        connect_timeout = max(1.0, self._timeout * 4)
        if address.unix_path is not None:
            return UNIXClientEndpoint(reactor, address.unix_path, timeout=connect_timeout)
        endpoint = HostnameEndpoint(reactor, address.host, address.port, timeout=connect_timeout)
        if address.tls:
            from twisted.internet.ssl import optionsForClientTLS

            endpoint = wrapClientTLS(optionsForClientTLS(address.host), endpoint)
        return endpoint

    def _fire_waiters(self, result: Any) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    def _drop(self) -> None:
        """Close the connection (and any attempt); the next probe opens a new one."""
        for factory in (self._factory, self._attempt):
            if factory is not None:
                _quietly(factory.disconnect())
        self._factory = self._handler = self._attempt = None
        self._fire_waiters(Failure(ConnectionError(f"Redis {self.where}: connection dropped")))
