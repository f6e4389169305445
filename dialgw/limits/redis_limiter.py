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
from typing import Any

from twisted.internet.defer import Deferred

from dialgw.limits.memory import MemoryLimiter
from dialgw.limits.policy import AppLimits, Decision
from dialgw.limits.redis_connection import RedisConnection

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


class RedisLimiter:
    """Limits shared by every gateway node through Redis, with a local fallback."""

    def __init__(self, connection: RedisConnection, fallback: MemoryLimiter, *,
                 probe_interval: float = 3.0) -> None:
        self._redis = connection
        self._clock = connection.clock
        self._fallback = fallback
        self._probe_interval = probe_interval
        self._probing = False

    @property
    def degraded(self) -> bool:
        return self._redis.degraded

    def start(self) -> Deferred[None]:
        return self._redis.ping()

    def check(self, app_id: str, limits: AppLimits, live_sessions: int) -> Deferred[Decision]:
        return Deferred.fromCoroutine(self._decide(app_id, limits, live_sessions, True))

    def peek(self, app_id: str, limits: AppLimits) -> Deferred[Decision]:
        return Deferred.fromCoroutine(self._decide(app_id, limits, 0, False))

    def close(self) -> Deferred[None]:
        return self._redis.close()

    # -- deciding ---------------------------------------------------------------

    async def _decide(self, app_id: str, limits: AppLimits, live_sessions: int, take: bool) -> Decision:
        redis = self._redis
        if redis.closed or (
            redis.degraded and (self._probing or self._clock.seconds() < redis.failed_at + self._probe_interval)
        ):
            return self._fallback.decide(app_id, limits, live_sessions, take)
        probe = redis.degraded
        self._probing = self._probing or probe
        try:
            args = [
                repr(float(limits.dials_per_sec)), str(limits.burst), str(limits.max_concurrent),
                str(limits.cooldown_after), repr(float(limits.cooldown_window_sec)),
                repr(float(limits.cooldown_sec)), str(live_sessions), "1" if take else "0",
            ]
            keys = keys_for(app_id)
            reply = await redis.run(lambda handler: Deferred.fromCoroutine(_evaluate(handler, keys, args)))
            return _decision(reply, limits)
        except Exception:
            return self._fallback.decide(app_id, limits, live_sessions, take)
        finally:
            if probe:
                self._probing = False


async def _evaluate(handler: Any, keys: list[str], args: list[str]) -> Any:
    from txredisapi import ScriptDoesNotExist

    try:
        return await handler.evalsha(SCRIPT_SHA1, keys, args)
    except ScriptDoesNotExist:
        # NOSCRIPT: this server has not seen the script yet (or flushed it).
        return await handler.eval(SCRIPT, keys, args)
