"""Fault 6: the webhook receiver is down for 10 hours while 1,000 calls
happen. Once it is back, every event is delivered, in order per session,
nothing is lost, and the sender's memory stays bounded.

Whole gateway (`tests.gateway.Harness`): real SQLite, real ESL over TCP to
the simulator, real HTTP to a receiver on 127.0.0.1; one `task.Clock`.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from dialgw.simulator.server import FreeSwitchSimulator
from tests.gateway import Harness
from tests.receiver import start_receiver

OUTAGE_SEC = 10 * 3600
CALLS = 1000
#: The calls come in batches spread evenly over the outage.
BATCHES = 20
BATCH_EVERY_SEC = OUTAGE_SEC / BATCHES
#: Under the simulator's sessions-per-second (30).
CALLS_PER_SEC = 10
#: With the SPEC's default of 10 attempts an event fails for good about 15
#: minutes into an outage. Under the 5-minute cap the full-jitter backoff
#: waits 2.5 minutes on average, so 10 hours take about 250 attempts; 1000
#: (the most the config allows) covers any outage up to max_age (24 h, the
#: default, kept), which is what ends a webhook's retries then.
MAX_ATTEMPTS = 1000
#: Between batches the clock moves in 10-minute steps; at each, the sender
#: attempts once every event that came due meanwhile. The real schedule
#: (about one attempt per event every 2.5 minutes) would cost ~125,000
#: attempts and ~100 s here (20-second steps); these steps cost ~35,000 and
#: ~30 s. Order, durability and the memory bound do not depend on it.
STEP_SEC = 600.0
#: The switch's heartbeat interval, raised so that a step never looks like
#: a silent switch (3 intervals).
HEARTBEAT_SEC = 300
#: The sender's page size (`WebhookSender` ``max_in_flight`` default): the
#: most deliveries it holds in memory, whatever the backlog.
IN_FLIGHT_BOUND = 100

#: The simulator's scenario by last digit, and the webhooks it produces.
LIFECYCLES = {
    "1": ["session.dialing", "session.ringing", "call.answered", "call.hangup"],
    "4": ["session.dialing", "session.early_media", "call.answered", "call.hangup"],
}


class OutageHarness(Harness):
    """The harness with a slow heartbeat and ``[webhooks] max_attempts`` raised."""

    def __init__(self, testcase) -> None:
        super().__init__(testcase)
        self.simulator.stop()
        self.simulator = FreeSwitchSimulator(clock=self.clock, heartbeat_sec=HEARTBEAT_SEC)
        self.simulator.start()
        testcase.addCleanup(self.simulator.stop)

    def config_text(self, sim_port: int, api=None, **extra: str) -> str:
        text = super().config_text(sim_port, api, **extra)
        return (
            text.replace("heartbeat_sec = 20\n", f"heartbeat_sec = {HEARTBEAT_SEC}\n")
            + f"[webhooks]\nmax_attempts = {MAX_ATTEMPTS}\n"
        )


class ReceiverOutageTests(TestCase):
    timeout = 600

    async def setUp(self) -> None:
        self.h = OutageHarness(self)
        self.down = True
        # Down: answers 503 (a proxy whose backend is gone). A closed port
        # would be as good a test, but each refused connection takes 0.3 s
        # of real time in Twisted's HostnameEndpoint (its attemptDelay).
        self.receiver, url = await start_receiver(self, self.h.clock, lambda _: (503 if self.down else 200, {}))
        await self.h.start_gateway(await self.h.start_simulator())
        self.h.app, self.h.key = await self.h.store.create_app("outage", url, ["0721234567"], self.h.clock.seconds())
        await self.h.store.update_app(self.h.app.app_id, burst=CALLS, dials_per_sec=CALLS, max_concurrent=CALLS)
        self.sender = self.h.gateway.webhooks
        self.placed: list[tuple[str, str]] = []

    async def step(self, seconds: float) -> None:
        """Advance the clock, then let the sender finish what came due (its
        claims, attempts and their records), so no lease runs out mid-air."""
        self.h.clock.advance(seconds)
        await self.sender.when_idle().addTimeout(60, reactor)

    async def run_until(self, when: float) -> None:
        while self.h.clock.seconds() < when:
            await self.step(min(STEP_SEC, when - self.h.clock.seconds()))
        await self.h.node_ready()

    async def calls(self, count: int) -> None:
        """Place ``count`` calls and let them run to their end."""
        batch = []
        for number in range(count):
            if number and number % CALLS_PER_SEC == 0:
                await self.h.advance(1.0, step=0.25)
            digit = "14"[len(self.placed) % 2]
            self.placed.append((await self.h.placed("052100000" + digit), digit))
            batch.append(self.placed[-1][0])
        await self.h.advance(5.0, step=0.25)
        for session_uuid in batch:
            await self.h.status(session_uuid, "ended")

    async def pending(self) -> int:
        return await self.h.store.count_pending_events()

    async def count(self, sql: str) -> int:
        ((value,),) = await self.h.store._pool.runQuery(sql)
        return value

    async def test_every_event_is_delivered_in_order_after_a_ten_hour_outage(self) -> None:
        h = self.h
        start = h.clock.seconds()
        for batch in range(BATCHES):
            await self.run_until(start + batch * BATCH_EVERY_SEC)
            await self.calls(CALLS // BATCHES)
        await self.run_until(start + OUTAGE_SEC)

        settings = h.gateway.settings.webhooks
        self.assertEqual((settings.max_attempts, settings.max_age_sec), (MAX_ATTEMPTS, 86400))
        self.assertEqual(len(self.placed), CALLS)
        self.assertEqual(h.gateway.pool.get("fs1").tracked, 0)
        self.assertEqual(await self.pending(), 4 * CALLS)
        # Only the first event of each session was ever sent; the rest wait.
        self.assertEqual({r.json()["sequence"] for r in self.receiver.received}, {1})
        self.assertEqual(await self.count("SELECT COUNT(*) FROM session_events WHERE sequence > 1 AND attempts > 0"), 0)
        # The earliest events were tried more often than the default max_attempts allows.
        self.assertGreater(await self.count("SELECT MAX(attempts) FROM session_events"), 10)

        refused = len(self.receiver.received)  # all answered 503; nothing is in flight
        self.down = False
        back = h.clock.seconds()
        while await self.pending():
            self.assertLess(h.clock.seconds() - back, 3600, "not drained within an hour")
            await self.step(10.0)

        self.assertEqual(await self.count("SELECT COUNT(*) FROM session_events WHERE delivery_state <> 'delivered'"), 0)
        self.assertEqual(self.sender.results.get("failed", 0), 0)
        # Memory: never more deliveries held than one page, with 4000 pending.
        self.assertLessEqual(self.sender.peak_in_flight, IN_FLIGHT_BOUND)
        self.assertEqual(await self.count("SELECT COUNT(*) FROM webhook_attempts"), sum(self.sender.results.values()))
        first: dict[str, list[dict]] = {}
        seen: set[str] = set()
        for received in self.receiver.received[refused:]:
            if received.event_id not in seen:
                seen.add(received.event_id)
                first.setdefault(received.json()["session_uuid"], []).append(received.json())
        self.assertEqual(len(first), CALLS)
        for session_uuid, digit in self.placed:
            events = await h.store.session_events(session_uuid)
            got = first[session_uuid]
            self.assertEqual([b["id"] for b in got], [e.event_id for e in events], session_uuid)
            self.assertEqual([b["event"] for b in got], LIFECYCLES[digit], session_uuid)
            self.assertEqual([b["sequence"] for b in got], [1, 2, 3, 4], session_uuid)
