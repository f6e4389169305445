"""The soak: thousands of calls of every scenario through a whole gateway,
with faults, then checks that nothing was lost, doubled or left behind.

Everything is real but time: the API over HTTP, ESL over TCP to the
in-process simulator, SQLite on disk, webhooks over HTTP to a receiver that
answers 500/503, drops connections or never answers for a share of them.
Every timer runs on one `task.Clock` that the driver advances a step at a
time, letting I/O settle between steps (`Soak._settle`), so the gateway
never falls seconds behind the clock and the scenarios keep their timing.

The ESL connection is cut (and now and then the switch restarted) while
calls are up. At the end, from the API's ``/events`` and the receiver's
journal:

- every session ended exactly once, its statuses only moved forward, and
  its hangup cause is its scenario's (or a documented fault cause, when a
  cut fell within its life);
- every session event was delivered (``delivered`` in the store, and a 2xx
  from the receiver for its ``webhook-id``), and no event of a session was
  sent before the one before it was acknowledged;
- the outbox is empty, no session is still followed, no channel held;
- the Python heap (pymalloc blocks) grew by no more than a small slack
  and two blocks per call between the end of a warm-up batch and the end.

Journals (dials, webhooks) go to files, not memory, so the soak's own
bookkeeping does not count as growth. ``run_soak`` returns the figures;
``python -m tests.soak --calls 5000`` (``make soak``) prints them.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
import urllib.parse
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any

import attrs
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.logger import LogLevel, globalLogBeginner, globalLogPublisher
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from dialgw.calls.machine import STATUSES
from tests.gateway import NOW, Harness, poll

CALLER_ID = "0721234567"

#: Each scenario undisturbed (README "Simulator scenarios"), by the last
#: digit of ``to``: its statuses and hangup cause. 6, 8, 9 and 0 stay up, so
#: the soak gives them a short ``max_duration_sec``.
NATURAL: dict[str, tuple[tuple[str, ...], str]] = {
    "1": (("dialing", "ringing", "answered", "ended"), "NORMAL_CLEARING"),
    "2": (("dialing", "ended"), "USER_BUSY"),
    "3": (("dialing", "ringing", "ended"), "NO_ANSWER"),
    "4": (("dialing", "early_media", "answered", "ended"), "NORMAL_CLEARING"),
    "5": (("dialing", "ended"), "CALL_REJECTED"),
    "7": (("dialing", "ended"), "DESTINATION_OUT_OF_ORDER"),
    **{digit: (("dialing", "ringing", "answered", "ended"), "ALLOTTED_TIMEOUT") for digit in "6890"},
}
#: What a DELETE ends a call with, before and after answer.
DELETE_CAUSES = frozenset({"ORIGINATOR_CANCEL", "NORMAL_CLEARING"})
#: The causes the README documents for calls caught by a lost connection
#: or a switch restart.
FAULT_CAUSES = frozenset({"NORMAL_UNSPECIFIED", "NORMAL_TEMPORARY_FAILURE", "RECOVERY_ON_TIMER_EXPIRE"})
#: How far (clock seconds) around a session's life a cut still counts as
#: within it: timestamps on the wire are in milliseconds, and the gateway
#: notices a cut (and reconciles) a step or two after it.
CUT_SLACK_SEC = 0.5
#: Pymalloc blocks the heap may grow by per call after the warm-up (a
#: session the tracker kept after its end would be about ten), above a
#: fixed slack for what settles lazily and is bounded: the reactor keeps up
#: to about fifty cancelled timers before it purges them, the SQLite driver
#: up to 200 dead cursor references, and so on (a few hundred blocks).
MAX_BLOCKS_PER_CALL = 2.0
HEAP_SLACK_BLOCKS = 600


@attrs.frozen
class ReceiverFaults:
    """Shares of webhook requests the receiver spoils (the rest get 204)."""

    error: float = 0.08  # 500, or 503 with a Retry-After
    drop: float = 0.03  # the connection is cut before any answer
    hang: float = 0.01  # never answered: the sender's timeout cuts it


@attrs.frozen
class Heap:
    """The process's memory at one moment."""

    blocks: int = 0  # pymalloc blocks in use, after a full collection
    rss_kib: int = 0


@attrs.define
class SoakFigures:
    """What a soak did and measured; `lines` is what ``make soak`` prints."""

    calls: int = 0
    seed: int = 0
    warmup_calls: int = 0
    scenarios: Counter = attrs.field(factory=Counter)
    causes: Counter = attrs.field(factory=Counter)
    sessions_ended: int = 0
    sessions_hit_by_faults: int = 0
    dials_refused: int = 0
    deletes: int = 0
    cuts: int = 0
    restarts: int = 0
    webhooks: int = 0
    webhook_requests: int = 0
    webhook_redeliveries: int = 0
    webhook_retries: int = 0
    receiver_faults: Counter = attrs.field(factory=Counter)
    logged: Counter = attrs.field(factory=Counter)
    clock_seconds: float = 0.0
    wall_seconds: float = 0.0
    #: After the warm-up batch, and at the end (both with every call ended).
    heap_warm: Heap = Heap()
    heap_end: Heap = Heap()

    def growth_per_call(self, measure: str) -> float:
        """How much ``measure`` (a `Heap` field) grew per call after the warm-up."""
        after = self.calls - self.warmup_calls
        grown = getattr(self.heap_end, measure) - getattr(self.heap_warm, measure)
        return grown / after if after > 0 else 0.0

    def lines(self) -> list[str]:
        def counts(counter: Counter) -> str:
            return ", ".join(f"{key} {value}" for key, value in sorted(counter.items())) or "none"

        return [
            f"calls:              {self.calls} (seed {self.seed}; warm-up {self.warmup_calls})",
            f"scenarios:          {counts(self.scenarios)}",
            f"sessions ended:     {self.sessions_ended} (each exactly once; "
            f"{self.sessions_hit_by_faults} lived through a cut)",
            f"hangup causes:      {counts(self.causes)}",
            f"dials refused:      {self.dials_refused} (503/429, retried)   deletes: {self.deletes}",
            f"connection cuts:    {self.cuts} (of which switch restarts: {self.restarts})",
            f"webhooks delivered: {self.webhooks} (every one, in order; "
            f"{self.webhook_requests} requests, {self.webhook_retries} retries, "
            f"{self.webhook_redeliveries} redelivered after a 2xx)",
            f"receiver faults:    {counts(self.receiver_faults)}",
            f"log warnings/errors: {counts(self.logged)}",
            f"time:               {self.clock_seconds:.0f} s on the clock, {self.wall_seconds:.1f} s wall",
            f"memory:             heap {self.heap_warm.blocks} -> {self.heap_end.blocks} blocks "
            f"({self.growth_per_call('blocks'):+.2f} per call), RSS {self.heap_warm.rss_kib} -> "
            f"{self.heap_end.rss_kib} KiB ({self.growth_per_call('rss_kib'):+.2f} per call), "
            f"after the warm-up -> at the end",
        ]


@attrs.frozen
class Plan:
    """What one call will do: the scenario (last digit of ``to``) and when to DELETE."""

    number: int
    to: str
    timeout_sec: int
    max_duration_sec: int
    delete_after: float | None

    @property
    def digit(self) -> str:
        return self.to[-1]


def make_plan(rng: random.Random, number: int) -> Plan:
    """A random call of a random scenario; one in five is deleted at a random time."""
    digit = rng.choice("1234567890")
    to = "052" + "".join(rng.choice("0123456789") for _ in range(6)) + digit
    timeout_sec = rng.randint(1, 4) if digit == "3" else rng.randint(6, 10)
    max_duration_sec = rng.randint(1, 4) if digit in "6890" else 30
    delete_after = round(rng.uniform(0.05, 3.0), 2) if rng.random() < 0.2 else None
    return Plan(number, to, timeout_sec, max_duration_sec, delete_after)


class SoakReceiver(Resource):
    """The app's webhook endpoint: answers, spoils some, journals all.

    One journal line per request: ``outcome webhook-id session sequence
    status call`` (outcome 204, 500, 503, drop or hang).
    """

    isLeaf = True

    def __init__(self, journal: IO[str], rng: random.Random, faults: ReceiverFaults) -> None:
        super().__init__()
        self.journal = journal
        self.rng = rng
        self.faults = faults
        self.outcomes: Counter = Counter()
        #: The open connections (set by `start_receiver`).
        self.connections: dict = {}

    def render_POST(self, request) -> Any:
        body = json.loads(request.content.read())
        event_id = request.getHeader("webhook-id")
        roll = self.rng.random()
        faults = self.faults
        if roll < faults.error:
            outcome = self.rng.choice(("500", "503"))
        elif roll < faults.error + faults.drop:
            outcome = "drop"
        elif roll < faults.error + faults.drop + faults.hang:
            outcome = "hang"
        else:
            outcome = "204"
        self.outcomes[outcome] += 1
        self.journal.write(
            f"{outcome} {event_id} {body['session_uuid']} {body['sequence']} {body['status']} "
            f"{body['metadata'].get('call')}\n"
        )
        if outcome == "drop":
            request.channel.transport.abortConnection()
            return NOT_DONE_YET
        if outcome == "hang":
            return NOT_DONE_YET
        request.setResponseCode(int(outcome))
        if outcome == "503":
            request.setHeader(b"retry-after", str(self.rng.randint(1, 3)).encode())
        return b""


async def start_receiver(helpers: Any, receiver: SoakReceiver) -> str:
    """Serve ``receiver`` on 127.0.0.1; its URL. Cleanup cuts what is left open."""
    site = WrappingFactory(Site(receiver))
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)

    async def stop() -> None:
        await port.stopListening()
        for protocol in list(site.protocols):
            protocol.transport.abortConnection()
        await poll(lambda: not site.protocols)

    helpers.addCleanup(stop)
    receiver.connections = site.protocols
    return f"http://127.0.0.1:{port.getHost().port}/hook"


def heap() -> Heap:
    """The memory now: pymalloc blocks in use after a full collection, and RSS."""
    # Caches that fill up to a bound, slowly: urllib's parse cache (every
    # DELETE has a URL of its own) and CPython's type attribute cache (it
    # keeps the name strings built by getattr(self, prefix + state)). A
    # warm-up would have to be long to fill them.
    urllib.parse.clear_cache()
    sys._clear_type_cache()
    gc.collect()
    blocks = sys.getallocatedblocks()
    rss = 0
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return Heap(blocks, rss)


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class Soak:
    """One soak run: the gateway, the receiver, the driver loop and the checks."""

    #: Clock seconds per step while calls are up, and while only webhook
    #: retries are left.
    STEP = 0.1
    IDLE_STEP = 0.5
    #: Real seconds a step may wait for I/O to settle before moving on.
    MAX_SETTLE = 2.0

    def __init__(self, helpers: Any, *, calls: int, seed: int, rate: float, warmup: int,
                 cut_every: int, faults: ReceiverFaults) -> None:
        self.helpers = helpers
        self.calls = calls
        self.rate = rate
        self.warmup = warmup
        self.cut_every = cut_every
        self.rng = random.Random(seed)
        self.figures = SoakFigures(calls=calls, seed=seed, warmup_calls=warmup)
        directory = helpers.mktemp()
        os.mkdir(directory)
        self.dials_path = os.path.join(directory, "dials.log")
        self.hooks_path = os.path.join(directory, "hooks.log")
        self.dials = open(self.dials_path, "w")
        self.hooks = open(self.hooks_path, "w")
        helpers.addCleanup(self.dials.close)
        helpers.addCleanup(self.hooks.close)
        self.receiver = SoakReceiver(self.hooks, random.Random(seed + 1), faults)
        self.h = Harness(helpers, start=NOW)
        # The harness tells the gateway the switch takes 1000 calls a second
        # (max_cps): so it must. Retries after a cut come in bursts, and a
        # refusal for CPS would look like a wrong hangup cause.
        self.h.simulator.sessions_per_second = 1000
        self.cut_times: list[float] = []
        self.next_fault = self._fault_after(0)
        self.requests = 0  # driver HTTP requests in flight
        self.active = 0  # call tasks not finished
        self.errors: list[BaseException] = []

    # -- driving -----------------------------------------------------------------

    async def run(self) -> SoakFigures:
        started = time.monotonic()
        h = self.h
        url = await start_receiver(self.helpers, self.receiver)
        await h.start_gateway(await h.start_simulator())
        h.app, h.key = await h.store.create_app("soak", url, [CALLER_ID], h.clock.seconds())
        # Limits far above what the soak asks: it is not a rate-limit test.
        await h.store.update_app(h.app.app_id, dials_per_sec=1000, burst=1000, max_concurrent=10000)
        observer = self._count_log
        globalLogPublisher.addObserver(observer)
        self.helpers.addCleanup(globalLogPublisher.removeObserver, observer)

        await self._batch(0, self.warmup)
        self.figures.heap_warm = await self._heap()
        await self._batch(self.warmup, self.calls)
        self.figures.heap_end = await self._heap()

        self.figures.clock_seconds = h.clock.seconds() - NOW
        self.figures.webhook_retries = h.gateway.webhooks.results.get("retry", 0)
        self.figures.receiver_faults = Counter(
            {k: v for k, v in self.receiver.outcomes.items() if k != "204"}
        )
        self.dials.flush()
        self.hooks.flush()
        await self._check()
        self.figures.wall_seconds = time.monotonic() - started
        return self.figures

    async def _heap(self) -> Heap:
        """`heap`, with what would blur it out of the way.

        The webhook sender's idle keep-alive connections (up to 10, tens of
        blocks at each end) are closed first: how many happen to be open
        must not count as growth. The journals' buffers are written.
        """
        await self.h.gateway.webhooks._pool.closeCachedConnections()
        await poll(lambda: not self.receiver.connections)
        self.dials.flush()
        self.hooks.flush()
        return heap()

    def _count_log(self, event: dict) -> None:
        level = event.get("log_level")
        if level is not None and level >= LogLevel.warn:
            self.figures.logged[level.name] += 1

    async def _batch(self, first: int, end: int) -> None:
        """Dial calls ``first`` to ``end`` at `rate` per clock second, then drain."""
        budget = 0.0
        number = first
        while number < end:
            budget += self.rate * self.STEP
            while budget >= 1.0 and number < end:
                budget -= 1.0
                if number == self.next_fault:
                    self._fault()
                    self.next_fault = self._fault_after(number)
                self._launch(make_plan(self.rng, number))
                number += 1
            await self._step(self.STEP)
        await self._drain()

    def _fault_after(self, number: int) -> int:
        """The dial before which the next fault comes: `cut_every` apart, give or take half."""
        return number + self.rng.randint(self.cut_every // 2, self.cut_every * 3 // 2)

    def _fault(self) -> None:
        """Cut the ESL connection; every third time, restart the switch instead."""
        self.cut_times.append(self.h.clock.seconds())
        self.figures.cuts += 1
        if self.figures.cuts % 3 == 2:
            self.figures.restarts += 1
            self.h.simulator.restart()
        else:
            self.h.simulator.drop_connections()

    def _launch(self, plan: Plan) -> None:
        self.active += 1
        self.figures.scenarios[plan.digit] += 1

        def done(result: object) -> None:
            self.active -= 1

        def failed(failure: Any) -> None:
            self.errors.append(failure.value)

        Deferred.fromCoroutine(self._call(plan)).addErrback(failed).addBoth(done)

    async def _http(self, method: str, path: str, body: bytes | None = None):
        self.requests += 1
        try:
            headers = self.h.auth()
            if body is not None:
                headers["Content-Type"] = "application/json"
            return await self.h.http.request(method, path, headers, body)
        finally:
            self.requests -= 1

    def _sleep(self, seconds: float) -> Deferred:
        return task.deferLater(self.h.clock, seconds, lambda: None)

    async def _call(self, plan: Plan) -> None:
        body = json.dumps({
            "to": plan.to, "from": CALLER_ID, "timeout_sec": plan.timeout_sec,
            "max_duration_sec": plan.max_duration_sec, "metadata": {"call": plan.number},
        }).encode()
        while True:
            reply = await self._http("POST", "/api/v1/dial", body)
            if reply.status == 202:
                break
            if reply.status not in (429, 503):
                raise AssertionError(f"call {plan.number}: dial answered {reply.status} {reply.body!r}")
            # Nothing stored, no call placed (README): safe to retry later.
            self.figures.dials_refused += 1
            await self._sleep(int(reply.headers.get("retry-after", "1")))
        session_uuid = reply.json()["session_uuid"]
        deleted = "-"
        if plan.delete_after is not None:
            await self._sleep(plan.delete_after)
            reply = await self._http("DELETE", f"/api/v1/dial/{session_uuid}")
            if reply.status not in (200, 202):
                raise AssertionError(f"call {plan.number}: DELETE answered {reply.status} {reply.body!r}")
            self.figures.deletes += 1
            deleted = "deleted"
        self.dials.write(f"{plan.number} {session_uuid} {plan.digit} {deleted}\n")

    async def _step(self, seconds: float) -> None:
        if self.errors:
            raise self.errors[0]
        # The simulator records every byte and command it gets, for tests
        # to inspect; the soak does not, and would see them as growth.
        self.h.simulator.received.clear()
        self.h.simulator.commands.clear()
        self.h.clock.advance(seconds)
        await self._settle()

    def _store_busy(self) -> bool:
        """Whether the store's thread has work (every event is a write there)."""
        threads = getattr(getattr(self.h.store, "_pool", None), "threadpool", None)
        if threads is None:
            return False
        return bool(threads.working) or threads._queue.qsize() > 0

    async def _settle(self) -> None:
        """Let I/O run until the driver's requests are answered and the
        store has been idle for a few reactor turns (bounded in real time)."""
        quiet = 0
        deadline = time.monotonic() + self.MAX_SETTLE
        while quiet < 3 and time.monotonic() < deadline:
            await task.deferLater(reactor, 0.0005, lambda: None)
            quiet = 0 if self.requests or self._store_busy() else quiet + 1

    async def _drain(self, limit: float = 1200.0) -> None:
        """Step the clock until every call ended and every webhook is settled."""
        h = self.h
        waited = 0.0
        checked = 0
        while True:
            busy = self.active or len(h.gateway.tracker) or not h.gateway.connections["fs1"].ready
            if not busy and checked <= 0:
                if not h.gateway.webhooks.in_flight and await h.store.count_pending_events() == 0:
                    return
                checked = 10  # the count is a query: not every step
            if waited > limit:
                raise AssertionError(
                    f"not drained after {limit:.0f} clock seconds: {self.active} calls dialing, "
                    f"{len(h.gateway.tracker)} sessions followed, "
                    f"{await h.store.count_pending_events()} webhooks pending"
                )
            step = self.STEP if busy else self.IDLE_STEP
            await self._step(step)
            waited += step
            checked -= 1

    # -- checking ------------------------------------------------------------------

    async def _check(self) -> None:
        h = self.h
        dials = {}
        with open(self.dials_path) as journal:
            for line in journal:
                number, session_uuid, digit, deleted = line.split()
                dials[session_uuid] = (int(number), digit, deleted == "deleted")
        assert len(dials) == self.calls, f"{len(dials)} sessions for {self.calls} calls"
        rows = await h.store.count_rows()
        assert rows["sessions"] == self.calls, f"{rows['sessions']} stored sessions for {self.calls} calls"
        assert len(h.gateway.tracker) == 0, f"{len(h.gateway.tracker)} sessions still followed"
        assert h.gateway.pool.get("fs1").tracked == 0, "channels still held in the pool"
        assert await h.store.count_pending_events() == 0, "webhooks still pending"

        stored: dict[str, tuple[str, int, str]] = {}  # event id -> (session, sequence, status)
        order: dict[str, list[str]] = {}  # session -> event ids by sequence
        sessions = list(dials)
        for start in range(0, len(sessions), 16):
            chunk = sessions[start:start + 16]
            views = await _gather([self._events(session_uuid) for session_uuid in chunk])
            for session_uuid, events in zip(chunk, views, strict=True):
                self._check_session(session_uuid, events, dials[session_uuid])
                order[session_uuid] = [event["id"] for event in events]
                for event in events:
                    stored[event["id"]] = (session_uuid, event["sequence"], event["status"])
        self._check_webhooks(stored, order, dials)

    async def _events(self, session_uuid: str) -> list[dict]:
        reply = await self._http("GET", f"/api/v1/dial/{session_uuid}/events")
        assert reply.status == 200, (session_uuid, reply.status)
        return reply.json()["events"]

    def _check_session(self, session_uuid: str, events: list[dict], dial: tuple[int, str, bool]) -> None:
        number, digit, deleted = dial
        f = self.figures
        where = f"call {number} ({session_uuid}, scenario {digit})"
        statuses = [event["status"] for event in events]
        assert [event["sequence"] for event in events] == list(range(1, len(events) + 1)), (where, events)
        assert statuses.count("ended") == 1 and statuses[-1] == "ended", (where, statuses)
        assert statuses[0] == "dialing", (where, statuses)
        ranks = [STATUSES.index(status) for status in statuses]
        assert ranks == sorted(set(ranks)), (where, statuses)
        undelivered = [event for event in events if event["delivery_state"] != "delivered"]
        assert not undelivered, (where, undelivered)
        f.sessions_ended += 1

        cause = events[-1]["hangup_cause"]
        begin, end = _epoch(events[0]["occurred_at"]), _epoch(events[-1]["occurred_at"])
        faulted = any(begin - CUT_SLACK_SEC <= cut <= end + CUT_SLACK_SEC for cut in self.cut_times)
        path, natural = NATURAL[digit]
        allowed = {natural}
        if deleted:
            allowed |= DELETE_CAUSES
        if faulted:
            allowed |= FAULT_CAUSES
            f.sessions_hit_by_faults += 1
        assert cause in allowed, f"{where}: ended {cause}, expected one of {sorted(allowed)}: {statuses}"
        if not (deleted or faulted):
            assert tuple(statuses) == path, f"{where}: went {statuses}, expected {list(path)}"
        f.causes[cause] += 1

    def _check_webhooks(self, stored: dict[str, tuple[str, int, str]], order: dict[str, list[str]],
                        dials: dict[str, tuple[int, str, bool]]) -> None:
        """Every event acknowledged; none sent before its predecessor was."""
        f = self.figures
        acknowledged: dict[str, int] = {}  # session -> highest sequence with a 2xx
        delivered: set[str] = set()
        with open(self.hooks_path) as journal:
            for line in journal:
                outcome, event_id, session_uuid, sequence, status, call = line.split()
                f.webhook_requests += 1
                assert event_id in stored, f"webhook {event_id} of no stored event: {line!r}"
                assert stored[event_id] == (session_uuid, int(sequence), status), (line, stored[event_id])
                assert call == str(dials[session_uuid][0]), f"metadata of another call: {line!r}"
                done = acknowledged.get(session_uuid, 0)
                assert int(sequence) <= done + 1, (
                    f"event {sequence} of {session_uuid} sent before event {done + 1} was delivered"
                )
                if outcome == "204":
                    if event_id in delivered:
                        f.webhook_redeliveries += 1
                    delivered.add(event_id)
                    acknowledged[session_uuid] = max(done, int(sequence))
        missing = set(stored) - delivered
        assert not missing, f"{len(missing)} webhooks never acknowledged, e.g. {sorted(missing)[:3]}"
        for session_uuid, ids in order.items():
            assert acknowledged.get(session_uuid) == len(ids), (session_uuid, acknowledged.get(session_uuid))
        f.webhooks = len(delivered)


async def _gather(coroutines: list) -> list:
    return await gatherResults([Deferred.fromCoroutine(c) for c in coroutines], consumeErrors=True)


async def run_soak(helpers: Any, *, calls: int = 250, seed: int = 1, rate: float = 10.0,
                   warmup: int | None = None, cut_every: int = 100,
                   faults: ReceiverFaults = ReceiverFaults(),
                   max_blocks_per_call: float = MAX_BLOCKS_PER_CALL) -> SoakFigures:
    """Run ``calls`` calls through a whole gateway with faults; check; the figures.

    ``helpers`` is what `Harness` needs of a trial `TestCase`
    (``addCleanup``, ``mktemp``). ``rate`` is dials per clock second; about
    one dial in ``cut_every`` is preceded by an ESL cut (every third one a
    switch restart). Raises `AssertionError` on the first broken promise.

    Run it in a process of its own (`main`, as ``make soak`` and
    ``tests/test_soak.py`` do): a trial worker under ``--jobs`` keeps every
    log event of a test until the test ends, and the gateway logs a dozen
    per call, which the heap check would take for a leak.
    """
    warmup = warmup if warmup is not None else max(50, calls // 10)
    soak = Soak(helpers, calls=calls, seed=seed, rate=rate, warmup=min(warmup, calls // 2),
                cut_every=cut_every, faults=faults)
    figures = await soak.run()
    errors = figures.logged.get("error", 0) + figures.logged.get("critical", 0)
    assert not errors, f"the gateway logged {errors} errors (a failure is logged as critical)"
    grown = figures.heap_end.blocks - figures.heap_warm.blocks
    bound = HEAP_SLACK_BLOCKS + max_blocks_per_call * (figures.calls - figures.warmup_calls)
    assert grown < bound, (
        f"the heap grew by {grown} blocks ({figures.growth_per_call('blocks'):.1f} per call) "
        f"after the warm-up; bound {bound:.0f}"
    )
    return figures


class Scratch:
    """What `Harness` needs of a trial `TestCase`, for the command line:
    temporary paths under one directory, and clean-ups run in reverse."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="dialgw-soak-")
        self._count = 0
        self._cleanups: list[tuple[Callable[..., Any], tuple, dict]] = []

    def mktemp(self) -> str:
        self._count += 1
        return os.path.join(self.root, f"t{self._count}")

    def addCleanup(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._cleanups.append((function, args, kwargs))

    async def cleanup(self) -> None:
        while self._cleanups:
            function, args, kwargs = self._cleanups.pop()
            result = function(*args, **kwargs)
            if inspect.isawaitable(result):
                await result
        shutil.rmtree(self.root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.soak [--calls N] [--seed S] ...``: run, print the figures.

    Exits with status 1 (and the failed check on stderr) if a check fails.
    """
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=10.0, help="dials per clock second")
    parser.add_argument("--cut-every", type=int, default=100, help="about one ESL cut per N dials")
    parser.add_argument("--warmup", type=int, default=None, help="calls before the first heap measure")
    parser.add_argument("--json", action="store_true", help="end with the figures as one JSON line")
    options = parser.parse_args(argv)
    # Log events are counted by the soak, not kept: an unstarted log system
    # would buffer them, and that buffer would look like a leak.
    globalLogBeginner.beginLoggingTo([], discardBuffer=True, redirectStandardIO=False)

    async def soak(_reactor: Any) -> None:
        scratch = Scratch()
        try:
            figures = await run_soak(
                scratch, calls=options.calls, seed=options.seed, rate=options.rate,
                cut_every=options.cut_every, warmup=options.warmup,
            )
        except BaseException:
            # The log goes nowhere (above): say why here.
            traceback.print_exc()
            print("soak FAILED", file=sys.stderr)
            raise
        finally:
            await scratch.cleanup()
        print("soak passed: every session ended once, every webhook delivered in order, memory flat")
        for line in figures.lines():
            print("  " + line)
        if options.json:
            print(json.dumps(attrs.asdict(figures)))

    task.react(lambda r: Deferred.fromCoroutine(soak(r)))


if __name__ == "__main__":
    main()
