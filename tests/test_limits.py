"""The limiters: one behaviour table run against both backends, cooldowns,
the shared Redis limiter's outages and recoveries.

The memory limiter runs on a `task.Clock`. The Redis limiter takes the time
from Redis's own ``TIME`` by design (so that gateway nodes need not agree on
the time), so where the table says "wait" the Redis run really waits; the
waits are short (at most 0.35 s) and every expected value has a margin of at
least 0.1 s either side, so a slow machine does not change them. Those waits
are the one exception to "use task.Clock, not sleeps": there is no clock to
inject into a Redis server. The limiter's own timers (call timeouts, probes)
still run on a `task.Clock` in every test here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.task import Clock, deferLater
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dialgw.config import RateLimitSettings
from dialgw.limits import (
    AppLimits,
    Decision,
    MemoryLimiter,
    RedisConnection,
    RedisLimiter,
    Reservations,
    limits_for,
)
from dialgw.limits.redis_connection import parse_redis_url
from dialgw.limits.redis_limiter import SCRIPT_SHA1, keys_for
from dialgw.store import App
from tests.gateway import poll
from tests.redis_server import RedisServer
from tests.support import with_timeout


def limits(rate: float = 5.0, burst: int = 10, max_concurrent: int = 100, after: int = 20,
           window: float = 10.0, cooldown: float = 30.0) -> AppLimits:
    return AppLimits(dials_per_sec=rate, burst=burst, max_concurrent=max_concurrent,
                     cooldown_after=after, cooldown_window_sec=window, cooldown_sec=cooldown)


PEEK = "peek"


@attrs.frozen
class Step:
    """Wait ``wait`` seconds, then dial with ``live`` sessions (or peek); expect a decision."""

    expect: tuple[bool, str | None, int, int, int]  # allowed, limit, retry_after, remaining, reset
    live: int | str = 0
    wait: float = 0.0


def ok(remaining: int, reset: int, live: int | str = 0, wait: float = 0.0) -> Step:
    return Step((True, None, 0, remaining, reset), live, wait)


def no(limit: str, retry_after: int, remaining: int, reset: int, live: int | str = 0,
       wait: float = 0.0) -> Step:
    return Step((False, limit, retry_after, remaining, reset), live, wait)


#: name -> (limits, steps). Shared by both backends.
TABLE: dict[str, tuple[AppLimits, list[Step]]] = {
    "a full bucket gives burst dials at once, then the next token is 1/5 s away": (
        limits(rate=5, burst=10),
        [ok(9, 1), ok(8, 1), ok(7, 1), ok(6, 1), ok(5, 1), ok(4, 2), ok(3, 2), ok(2, 2), ok(1, 2), ok(0, 2),
         no("dials_per_sec", 1, 0, 2)],
    ),
    "retry-after is the whole seconds to the next token, rounded up": (
        limits(rate=0.25, burst=2),
        [ok(1, 4), ok(0, 8), no("dials_per_sec", 4, 0, 8), no("dials_per_sec", 4, 0, 8)],
    ),
    "a slow rate: two seconds a token": (
        limits(rate=0.5, burst=1),
        [ok(0, 2), no("dials_per_sec", 2, 0, 2)],
    ),
    "a refused dial takes no token": (
        limits(rate=5, burst=1),
        [ok(0, 1), no("dials_per_sec", 1, 0, 1), no("dials_per_sec", 1, 0, 1), ok(0, 1, wait=0.3)],
    ),
    "the bucket refills at dials_per_sec and never past burst": (
        limits(rate=5, burst=2),
        [ok(1, 1), ok(0, 1), ok(0, 1, wait=0.3), ok(1, 1, wait=0.5)],
    ),
    "max_concurrent counts live sessions and a refusal takes no token": (
        limits(burst=10, max_concurrent=2),
        [ok(9, 1, live=1), no("max_concurrent", 1, 9, 1, live=2), no("max_concurrent", 1, 9, 1, live=5),
         ok(8, 1, live=1)],
    ),
    "max_concurrent with an empty bucket: retry after the next token": (
        limits(rate=0.5, burst=1, max_concurrent=1),
        [ok(0, 2), no("max_concurrent", 2, 0, 2, live=1)],
    ),
    "a peek takes nothing and counts nothing": (
        limits(rate=0.5, burst=2, after=1),
        [ok(2, 0, live=PEEK), ok(2, 0, live=PEEK), ok(1, 2), ok(0, 4),
         no("dials_per_sec", 2, 0, 4, live=PEEK), no("dials_per_sec", 2, 0, 4, live=PEEK),
         no("dials_per_sec", 2, 0, 4)],
    ),
    "more than cooldown_after refusals within the window start a cooldown": (
        limits(rate=0.5, burst=1, after=2, window=10, cooldown=30),
        [ok(0, 2), no("dials_per_sec", 2, 0, 2), no("dials_per_sec", 2, 0, 2), no("cooldown", 30, 0, 2),
         no("cooldown", 30, 0, 2), no("cooldown", 30, 0, 2, live=PEEK)],
    ),
    "a max_concurrent refusal is a 429 too and counts toward a cooldown": (
        limits(burst=10, max_concurrent=1, after=1, cooldown=30),
        [no("max_concurrent", 1, 10, 0, live=1), no("cooldown", 30, 10, 0, live=1),
         no("cooldown", 30, 10, 0, live=0)],
    ),
    "a cooldown's retry-after is the later of its end and the next token": (
        limits(rate=0.01, burst=1, after=1, cooldown=30),
        [ok(0, 100), no("dials_per_sec", 100, 0, 100), no("cooldown", 100, 0, 100)],
    ),
    "a cooldown ends on time; refusals during it neither extend it nor count toward the next": (
        limits(rate=5, burst=1, after=1, window=10, cooldown=0.6),
        [ok(0, 1), no("dials_per_sec", 1, 0, 1), no("cooldown", 1, 0, 1),
         no("cooldown", 1, 1, 0, wait=0.2), no("cooldown", 1, 1, 0, wait=0.2),
         ok(0, 1, wait=0.35), no("dials_per_sec", 1, 0, 1)],
    ),
    "refusals spread wider than the window start no cooldown": (
        limits(rate=0.01, burst=1, after=2, window=0.3, cooldown=30),
        [ok(0, 100), no("dials_per_sec", 100, 0, 100), no("dials_per_sec", 100, 0, 100),
         no("dials_per_sec", 100, 0, 100, wait=0.35), no("dials_per_sec", 100, 0, 100),
         no("cooldown", 100, 0, 100)],
    ),
}


def as_tuple(decision: Decision) -> tuple[bool, str | None, int, int, int]:
    return (decision.allowed, decision.limit, decision.retry_after, decision.remaining, decision.reset)


async def run_table(testcase, limiter: Any, wait: Callable[[float], Awaitable[None]]) -> None:
    for index, (name, (app_limits, steps)) in enumerate(TABLE.items()):
        app_id = f"app_case{index}"
        for number, step in enumerate(steps, 1):
            if step.wait:
                await wait(step.wait)
            if step.live == PEEK:
                decision = await with_timeout(limiter.peek(app_id, app_limits))
            else:
                decision = await with_timeout(limiter.check(app_id, app_limits, step.live))
            testcase.assertEqual(as_tuple(decision), step.expect, f"{name}: step {number}")
            testcase.assertEqual(decision.header_limit, app_limits.burst, name)


class MemoryLimiterTests(TestCase):
    async def test_behaviour_table(self) -> None:
        clock = Clock()
        clock.advance(1_800_000_000.25)  # a large, inexact clock, as in production

        async def wait(seconds: float) -> None:
            clock.advance(seconds)

        await run_table(self, MemoryLimiter(clock), wait)


class MemoryCooldownTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.limiter = MemoryLimiter(self.clock)
        self.limits = limits(rate=1, burst=1, after=3, window=10, cooldown=30)

    def dial(self, live: int = 0) -> Decision:
        return self.successResultOf(self.limiter.check("app_1", self.limits, live))

    def test_entry_after_cooldown_after_plus_one_refusals_then_exact_countdown(self) -> None:
        self.assertTrue(self.dial().allowed)
        for _ in range(3):
            self.assertEqual(self.dial().limit, "dials_per_sec")
        entry = self.dial()
        self.assertEqual((entry.limit, entry.retry_after), ("cooldown", 30))
        self.clock.advance(10)
        self.assertEqual((self.dial().limit, self.dial().retry_after), ("cooldown", 20))
        self.clock.advance(19.5)
        self.assertEqual((self.dial().limit, self.dial().retry_after), ("cooldown", 1))
        self.clock.advance(0.5)
        self.assertTrue(self.dial().allowed)

    def test_refusals_during_a_cooldown_do_not_extend_it(self) -> None:
        self.dial()
        for _ in range(4):
            self.dial()
        for _ in range(29):
            self.clock.advance(1)
            for _ in range(10):
                self.assertEqual(self.dial().limit, "cooldown")
        self.clock.advance(1)
        self.assertTrue(self.dial().allowed)
        # None of the 290 refusals counts toward the next cooldown.
        self.assertEqual(self.dial().limit, "dials_per_sec")

    def test_apps_have_their_own_buckets(self) -> None:
        self.dial()
        self.assertEqual(self.dial().limit, "dials_per_sec")
        other = self.successResultOf(self.limiter.check("app_2", self.limits, 0))
        self.assertTrue(other.allowed)

    def test_a_smaller_burst_applies_at_once(self) -> None:
        roomy = limits(burst=10)
        self.successResultOf(self.limiter.check("app_1", roomy, 0))
        tight = self.successResultOf(self.limiter.check("app_1", limits(burst=2), 0))
        self.assertEqual((tight.remaining, tight.header_limit), (1, 2))

    def test_headers(self) -> None:
        self.assertEqual(
            self.dial().headers(),
            [("X-RateLimit-Limit", "1"), ("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "1")],
        )

    def test_never_degraded(self) -> None:
        self.assertFalse(self.limiter.degraded)


class LimitsForTests(SynchronousTestCase):
    def app(self, **overrides: Any) -> App:
        fields = dict(dials_per_sec=None, burst=None, max_concurrent=None)
        fields.update(overrides)
        return App(app_id="app_1", name="n", webhook_url="http://x", webhook_secret="s",
                   previous_webhook_secret=None, previous_secret_expires_at=None, enabled=True,
                   caller_ids=frozenset(), created_at=0.0, **fields)

    def test_overrides_else_defaults(self) -> None:
        settings = RateLimitSettings(dials_per_sec=5, burst=10, max_concurrent=100, cooldown_after=20,
                                     cooldown_window_sec=10, cooldown_sec=30)
        self.assertEqual(limits_for(self.app(), settings), limits())
        self.assertEqual(
            limits_for(self.app(dials_per_sec=0.5, burst=3, max_concurrent=7), settings),
            limits(rate=0.5, burst=3, max_concurrent=7),
        )


class ReservationsTests(SynchronousTestCase):
    def test_a_ticket_released_while_the_store_was_counted_still_counts_once(self) -> None:
        reservations = Reservations()
        first = reservations.hold("app_1")
        before = reservations.snapshot("app_1")
        reservations.release("app_1", first)  # committed, maybe after the count read the table
        second = reservations.hold("app_1")
        self.assertEqual(reservations.in_flight_since("app_1", before), 2)
        self.assertEqual(reservations.in_flight_since("app_2", frozenset()), 0)
        reservations.release("app_1", second)
        self.assertEqual(reservations.held("app_1"), 0)


class RedisURLTests(SynchronousTestCase):
    def test_urls(self) -> None:
        address = parse_redis_url("redis://user:p%40ss@10.0.0.5:6380/2")
        self.assertEqual((address.host, address.port, address.db, address.username, address.password, address.tls),
                         ("10.0.0.5", 6380, 2, "user", "p@ss", False))
        self.assertNotIn("p@ss", address.describe())
        self.assertEqual(parse_redis_url("rediss://r.example").tls, True)
        self.assertEqual(parse_redis_url("redis://127.0.0.1").db, None)
        unix = parse_redis_url("unix:///run/redis.sock?db=3")
        self.assertEqual((unix.unix_path, unix.db), ("/run/redis.sock", 3))


class LogCapture:
    """The Redis connection's log events (outages and recoveries)."""

    def __init__(self, testcase) -> None:
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.observe)
        testcase.addCleanup(globalLogPublisher.removeObserver, self.observe)

    def observe(self, event: dict) -> None:
        if event.get("log_namespace") == "dialgw.limits.redis_connection":
            self.events.append(event)

    def count(self, text: str) -> int:
        return sum(1 for event in self.events if text in event.get("log_format", ""))


class RedisLimiterTests(TestCase):
    def setUp(self) -> None:
        self.redis = RedisServer(self)
        self.redis.start()
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.logs = LogCapture(self)

    def limiter(self, **kwargs: Any) -> RedisLimiter:
        probe_interval = kwargs.pop("probe_interval", 3.0)
        connection = RedisConnection(self.redis.url, self.clock, **kwargs)
        limiter = RedisLimiter(connection, MemoryLimiter(self.clock), probe_interval=probe_interval)
        self.addCleanup(limiter.close)
        return limiter

    async def test_behaviour_table(self) -> None:
        async def wait(seconds: float) -> None:
            # Redis's TIME is the time source of the script: only real time moves it.
            await deferLater(reactor, seconds, lambda: None)

        limiter = self.limiter()
        await run_table(self, limiter, wait)
        self.assertFalse(limiter.degraded)
        self.assertEqual(self.logs.events, [])

    async def test_two_nodes_share_one_bucket(self) -> None:
        node_a, node_b = self.limiter(), self.limiter()
        app_limits = limits(rate=0.01, burst=3)
        allowed = [
            (await node.check("app_1", app_limits, 0)).allowed for node in (node_a, node_b, node_a, node_b)
        ]
        self.assertEqual(allowed, [True, True, True, False])

    async def test_keys_expire_by_themselves(self) -> None:
        limiter = self.limiter()
        app_limits = limits(rate=1, burst=2, after=1, cooldown=30)
        for _ in range(4):
            await limiter.check("app_1", app_limits, 0)
        bucket, refusals, cooldown = keys_for("app_1")
        bucket_ttl = int(self.redis.command("PTTL", bucket))
        self.assertTrue(0 < bucket_ttl <= 3000, bucket_ttl)  # full in 2 s, + 1 s of slack
        self.assertTrue(0 < int(self.redis.command("PTTL", cooldown)) <= 30_000)
        self.assertEqual(self.redis.command("EXISTS", refusals), "0")  # cleared by the cooldown
        await limiter.check("app_2", limits(rate=0.01, burst=1, after=5, window=10), 0)
        await limiter.check("app_2", limits(rate=0.01, burst=1, after=5, window=10), 0)
        self.assertTrue(0 < int(self.redis.command("PTTL", keys_for("app_2")[1])) <= 10_000)
        for key in self.redis.command("KEYS", "*").split():
            self.assertNotEqual(self.redis.command("PTTL", key), "-1", key)

    async def test_script_flushed_from_redis_is_sent_again(self) -> None:
        limiter = self.limiter()
        await limiter.check("app_1", limits(), 0)
        self.assertEqual(self.redis.command("SCRIPT", "EXISTS", SCRIPT_SHA1), "1")
        self.redis.command("SCRIPT", "FLUSH")
        decision = await limiter.check("app_1", limits(), 0)
        self.assertEqual((decision.allowed, decision.remaining), (True, 8))
        self.assertFalse(limiter.degraded)

    async def test_killed_redis_degrades_once_then_recovers(self) -> None:
        node_a, node_b = self.limiter(probe_interval=3.0), self.limiter(probe_interval=3.0)
        await node_a.start()
        await node_b.start()
        self.assertFalse(node_a.degraded)
        app_limits = limits(rate=0.01, burst=3)
        await node_a.check("app_1", app_limits, 0)
        await node_b.check("app_1", app_limits, 0)

        self.redis.kill()
        # Each node notices the lost connection by itself, before any dial.
        await poll(lambda: node_a.degraded and node_b.degraded)
        decisions = [await with_timeout(node_a.check("app_1", app_limits, 0)) for _ in range(5)]
        # The local bucket stands in: full, as it never saw the shared one.
        self.assertEqual([d.allowed for d in decisions], [True, True, True, False, False])
        self.assertEqual(
            [d.limit for d in decisions[3:]], ["dials_per_sec", "dials_per_sec"]
        )
        self.assertTrue((await with_timeout(node_b.check("app_1", app_limits, 0))).allowed)
        self.clock.advance(3)
        await with_timeout(node_a.check("app_1", app_limits, 0))  # a probe, refused: still local
        self.assertTrue(node_a.degraded)
        self.assertEqual(self.logs.count("unreachable"), 2, "once per node")

        self.redis.start()
        await with_timeout(node_a.check("app_1", app_limits, 0))
        self.assertTrue(node_a.degraded, "no probe before probe_interval")
        self.clock.advance(3)
        first = await with_timeout(node_a.check("app_1", app_limits, 0))
        self.assertFalse(node_a.degraded)
        # Shared limiting resumes (the restarted Redis kept nothing): 3 across both nodes.
        rest = [await with_timeout(node.check("app_1", app_limits, 0)) for node in (node_b, node_a, node_b)]
        self.assertEqual([first.allowed] + [d.allowed for d in rest], [True, True, True, False])
        self.assertFalse(node_b.degraded)
        self.assertEqual(self.logs.count("answers again"), 2)
        self.assertEqual(self.logs.count("unreachable"), 2)

    async def test_a_silent_redis_times_out_to_the_local_limiter(self) -> None:
        limiter = self.limiter(timeout=0.25, probe_interval=3.0)
        await limiter.start()
        self.redis.pause()
        pending = limiter.check("app_1", limits(), 0)
        await deferLater(reactor, 0.05, lambda: None)  # the command is on the wire, unanswered
        self.assertNoResult(pending)
        self.clock.advance(0.25)
        decision = await with_timeout(pending)
        self.assertEqual((decision.allowed, decision.remaining), (True, 9))
        self.assertTrue(limiter.degraded)
        self.redis.resume()
        self.clock.advance(3)
        await with_timeout(limiter.check("app_1", limits(), 0))
        self.assertFalse(limiter.degraded)

    async def test_unreachable_at_start(self) -> None:
        self.redis.kill()
        limiter = self.limiter()
        await with_timeout(limiter.start())
        self.assertTrue(limiter.degraded)
        decision = await with_timeout(limiter.check("app_1", limits(), 0))
        self.assertTrue(decision.allowed)
        self.assertEqual(self.logs.count("unreachable"), 1)
