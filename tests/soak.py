"""The soak: thousands of calls of every scenario through a whole gateway,
with faults, then checks that nothing was lost, doubled or left behind.

Everything is real but time: the API over HTTP, ESL over TCP to the
in-process simulator, SQLite on disk, webhooks over HTTP to a receiver that
answers 500/503, drops connections or never answers for a share of them.
Every timer runs on one `task.Clock` that the driver advances a step at a
time, letting I/O settle between steps (`Soak._settle`), so the gateway
never falls seconds behind the clock and the scenarios keep their timing.

Faults come one after another, about every ``cut_every`` dials, drawn in
random rounds from those enabled (``--faults``, `tests.chaos.FAULTS`): the
ESL connection cut, the switch restarted, the database stalled or gone
(SQLite locked by another connection, PostgreSQL behind a proxy that cuts
and refuses), the second app's receiver black-holed, the gateway killed as
by ``kill -9`` and started again on the same database. Each can be enabled
alone; windows overlap (a black hole lasts over later faults). While the
database is away the clock runs at the pace of real time, so that the
gateway's retries and the database's own timeouts meet as they would.

The soak runs on SQLite (a file) or PostgreSQL (``--engine``; a database
of its own on the local server, `tests.pg`). At the end, from the API's
``/events``, the store, the switch's own journal (`tests.chaos.SwitchTruth`)
and the receivers' journal, each promise is a named check, and every
broken one is reported with how many sessions and one or two examples
(``[check] N x what`` lines), not only the first:

- ``drained``: every call ended and every webhook settled within the
  drain limit (else: what is left, with examples);
- ``ended_once``: every session ended exactly once, its statuses only
  moved forward;
- ``cause``: its hangup cause is its scenario's (or a documented fault
  cause, when an ESL cut, switch restart or gateway kill fell within its
  life; a database outage excuses nothing);
- ``timestamps``: ``answered_at`` set if and only if the switch answered
  (unless the gateway was blind to the switch then), ``answered_at`` and
  ``ended_at`` the switch's own times (unless the webhook says
  ``ended_at_estimated``), and ``duration_sec`` never above
  ``max_duration_sec``;
- ``webhooks``: every session event delivered (``delivered`` in the store
  and a 2xx from the receiver for its ``webhook-id``), none sent before
  the one before it was acknowledged, none sent again after a 2xx unless
  the gateway was killed meanwhile;
- ``fairness``: the first webhook of a session of the first app is sent
  within `FAIRNESS_SEC` whatever the second app's receiver does (outside
  database outages and gateway restarts);
- ``slots``: no ``max_concurrent`` slot left taken (``apps.live_sessions``
  back to 0), no session followed, no channel held;
- ``logged``: no error logged outside database outages;
- ``heap``: the Python heap (pymalloc blocks) grew by no more than a small
  slack and two blocks per call between the end of a warm-up batch and
  the end.

Journals (dials, webhooks) go to files, not memory, so the soak's own
bookkeeping does not count as growth. ``run_soak`` returns the figures;
``python -m tests.soak --calls 5000 --engine sqlite`` (``make soak``)
prints them.
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
from twisted.application.service import Service
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import ConnectError, ConnectionDone, ConnectionLost
from twisted.logger import LogLevel, formatEvent, globalLogBeginner, globalLogPublisher
from twisted.protocols.policies import WrappingFactory
from twisted.web.client import ResponseFailed, ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from dialgw import ids
from dialgw.calls.machine import STATUSES
from tests.chaos import (
    BLIND_FAULTS,
    FAULT_HELP,
    FAULTS,
    Mortal,
    PostgresProxy,
    SqliteLock,
    SwitchTruth,
    Truth,
    Verdict,
    read_truth,
)
from tests.gateway import NOW, Harness, poll
from tests.pg import create_database

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
#: Of the calls, the share the second app makes (the app whose receiver
#: the ``blackhole`` fault silences): enough that its stuck deliveries
#: outnumber the sender's slots within one black hole.
SECOND_APP_SHARE = 0.3
#: How long (real seconds) a ``store`` fault keeps the database away: some
#: outages shorter than SQLite's busy_timeout (5 s: writes wait), some longer.
STORE_OUTAGE_SEC = (2.0, 8.0)
#: How long (clock seconds) a ``blackhole`` lasts, and a killed gateway stays down.
BLACKHOLE_SEC = (60.0, 120.0)
DOWNTIME_SEC = (1.0, 5.0)
#: The first app's first webhook of a session goes out within this many
#: clock seconds of the dial, whatever the second app's receiver does.
FAIRNESS_SEC = 3.0
#: Clock seconds after a database outage or a gateway restart during which
#: webhooks may be late (the backlog built up meanwhile goes out first).
RECOVERY_SEC = 30.0
#: How far (clock seconds) a recorded time may be from the switch's.
TIME_SLACK_SEC = 0.01
#: Clock seconds the drain may take before what is left is reported.
DRAIN_LIMIT_SEC = 900.0
#: The checks, in the order they are reported (module docstring).
CHECKS = ("drained", "ended_once", "cause", "timestamps", "webhooks", "fairness", "slots", "logged", "heap")


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
    engine: str = "sqlite"
    faults: list[str] = attrs.field(factory=list)
    warmup_calls: int = 0
    scenarios: Counter = attrs.field(factory=Counter)
    causes: Counter = attrs.field(factory=Counter)
    sessions_ended: int = 0
    sessions_hit_by_faults: int = 0
    dials_refused: int = 0
    dials_retried: int = 0
    deletes: int = 0
    cuts: int = 0
    restarts: int = 0
    store_outages: int = 0
    blackholes: int = 0
    kills: int = 0
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
    #: The checks that failed, and the diagnosis (`tests.chaos.Verdict.lines`).
    failed_checks: list[str] = attrs.field(factory=list)
    violations: list[str] = attrs.field(factory=list)

    def growth_per_call(self, measure: str) -> float:
        """How much ``measure`` (a `Heap` field) grew per call after the warm-up."""
        after = self.calls - self.warmup_calls
        grown = getattr(self.heap_end, measure) - getattr(self.heap_warm, measure)
        return grown / after if after > 0 else 0.0

    def lines(self) -> list[str]:
        def counts(counter: Counter) -> str:
            return ", ".join(f"{key} {value}" for key, value in sorted(counter.items())) or "none"

        return [
            f"calls:              {self.calls} on {self.engine} (seed {self.seed}; warm-up {self.warmup_calls})",
            f"faults enabled:     {', '.join(self.faults) or 'none'}",
            f"scenarios:          {counts(self.scenarios)}",
            f"sessions ended:     {self.sessions_ended} ({self.sessions_hit_by_faults} lived through a cut, "
            "restart or kill)",
            f"hangup causes:      {counts(self.causes)}",
            f"dials refused:      {self.dials_refused} (503/429, retried); {self.dials_retried} retried "
            f"after a lost connection   deletes: {self.deletes}",
            f"connection cuts:    {self.cuts} (of which switch restarts: {self.restarts})",
            f"other faults:       {self.store_outages} database outages, {self.blackholes} black holes, "
            f"{self.kills} gateway kills",
            f"webhooks delivered: {self.webhooks} ({self.webhook_requests} requests, {self.webhook_retries} "
            f"retries, {self.webhook_redeliveries} redelivered after a 2xx)",
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
    """What one call will do: the scenario (last digit of ``to``), its app and when to DELETE."""

    number: int
    to: str
    timeout_sec: int
    max_duration_sec: int
    delete_after: float | None
    app: int = 0

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
    app = 1 if rng.random() < SECOND_APP_SHARE else 0
    return Plan(number, to, timeout_sec, max_duration_sec, delete_after, app)


class SoakReceiver(Resource):
    """An app's webhook endpoint: answers, spoils some, journals all.

    One journal line per request: ``outcome webhook-id session sequence
    status call clock`` (outcome 204, 500, 503, drop, hang, or blackhole
    while `black_holed`: accepted, never answered).
    """

    isLeaf = True

    def __init__(self, journal: IO[str], rng: random.Random, faults: ReceiverFaults, clock: Any) -> None:
        super().__init__()
        self.journal = journal
        self.rng = rng
        self.faults = faults
        self.clock = clock
        self.black_holed = False
        self.outcomes: Counter = Counter()
        #: The open connections (set by `start_receiver`).
        self.connections: dict = {}

    def render_POST(self, request) -> Any:
        body = json.loads(request.content.read())
        event_id = request.getHeader("webhook-id")
        roll = self.rng.random()
        faults = self.faults
        if self.black_holed:
            outcome = "blackhole"
        elif roll < faults.error:
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
            f"{body['metadata'].get('call')} {self.clock.seconds()!r} "
            f"{int(bool(body.get('ended_at_estimated')))}\n"
        )
        if outcome == "drop":
            request.channel.transport.abortConnection()
            return NOT_DONE_YET
        if outcome in ("hang", "blackhole"):
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


@attrs.define
class Window:
    """When one fault lasted (clock seconds; an ESL cut or restart is an instant)."""

    fault: str
    start: float
    end: float | None = None

    def overlaps(self, begin: float, end: float, slack: float) -> bool:
        last = self.end if self.end is not None else float("inf")
        return self.start - slack <= end and begin <= last + slack


#: Errors a dial or DELETE may meet while the gateway is killed or starting
#: again: the request's fate is unknown, so it is sent again (a dial with
#: the same Idempotency-Key: replayed if it was stored).
LOST_REQUEST = (ConnectError, ConnectionLost, ConnectionDone, ResponseNeverReceived, ResponseFailed)


class Soak:
    """One soak run: the gateway, the receivers, the faults, the driver loop and the checks."""

    #: Clock seconds per step while calls are up, and while only webhook
    #: retries are left.
    STEP = 0.1
    IDLE_STEP = 0.5
    #: Real seconds a step may wait for I/O to settle before moving on.
    MAX_SETTLE = 2.0

    def __init__(self, helpers: Any, *, calls: int, seed: int, rate: float, warmup: int,
                 cut_every: int, receiver_faults: ReceiverFaults, faults: frozenset[str] = frozenset(FAULTS),
                 engine: str = "sqlite") -> None:
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
        if engine not in ("sqlite", "postgresql"):
            raise ValueError(f"unknown engine {engine!r}: sqlite or postgresql")
        self.helpers = helpers
        self.calls = calls
        self.rate = rate
        self.warmup = warmup
        self.cut_every = cut_every
        self.faults = [fault for fault in FAULTS if fault in faults]
        self.engine = engine
        self.rng = random.Random(seed)
        self.figures = SoakFigures(calls=calls, seed=seed, warmup_calls=warmup, engine=engine,
                                   faults=list(self.faults))
        directory = helpers.mktemp()
        os.mkdir(directory)
        self.dials_path = os.path.join(directory, "dials.log")
        self.hooks_path = os.path.join(directory, "hooks.log")
        self.truth_path = os.path.join(directory, "switch.log")
        self.dials = open(self.dials_path, "w")
        self.hooks = open(self.hooks_path, "w")
        self.truth_journal = open(self.truth_path, "w")
        for journal in (self.dials, self.hooks, self.truth_journal):
            helpers.addCleanup(journal.close)
        self.h = Harness(helpers, start=NOW)
        clock = self.h.clock
        self.receivers = [
            SoakReceiver(self.hooks, random.Random(seed + 1), receiver_faults, clock),
            SoakReceiver(self.hooks, random.Random(seed + 2), receiver_faults, clock),
        ]
        self.apps: list[tuple[str, str]] = []
        # The harness tells the gateway the switch takes 1000 calls a second
        # (max_cps): so it must. Retries after a cut come in bursts, and a
        # refusal for CPS would look like a wrong hangup cause.
        self.h.simulator.sessions_per_second = 1000
        self.truth = SwitchTruth(self.h.simulator, self.truth_journal)
        self.windows: list[Window] = []
        self.round: list[str] = []
        self.next_fault = self._fault_after(0)
        self.requests = 0  # driver HTTP requests in flight
        self.active = 0  # call tasks not finished
        self.errors: list[BaseException] = []
        # The faults' state.
        self.sim_port = 0
        self.process = Mortal(reactor, clock)
        self.dead: list[Mortal] = []
        self.down: Window | None = None  # the gateway killed, until it restarts
        self.restart_at = 0.0
        self.outage: Window | None = None  # the database away, until `outage_until` (real time)
        self.outage_until = 0.0
        self.blackhole: Window | None = None
        self.sqlite_lock: SqliteLock | None = None
        self.proxy: PostgresProxy | None = None
        self.old_results: Counter = Counter()
        self.log_samples: list[str] = []
        self.estimated: set[str] = set()

    # -- driving -----------------------------------------------------------------

    async def run(self) -> SoakFigures:
        started = time.monotonic()
        h = self.h
        await self._database()
        urls = [await start_receiver(self.helpers, receiver) for receiver in self.receivers]
        self.sim_port = await h.start_simulator()
        await self._start_gateway()
        self.helpers.addCleanup(self._stop)
        for number, url in enumerate(urls):
            app, key = await h.store.create_app(f"soak{number}", url, [CALLER_ID], h.clock.seconds())
            # Limits far above what the soak asks: it is not a rate-limit test.
            await h.store.update_app(app.app_id, dials_per_sec=1000, burst=1000, max_concurrent=10000)
            self.apps.append((app.app_id, key))
        observer = self._count_log
        globalLogPublisher.addObserver(observer)
        self.helpers.addCleanup(globalLogPublisher.removeObserver, observer)

        verdict = Verdict()
        drained = await self._batch(0, self.warmup, verdict)
        if drained:
            self.figures.heap_warm = await self._heap()
            drained = await self._batch(self.warmup, self.calls, verdict)
        if drained:
            self.figures.heap_end = await self._heap()

        self.figures.clock_seconds = h.clock.seconds() - NOW
        results = self.old_results + Counter(h.gateway.webhooks.results)
        self.figures.webhook_retries = results.get("retry", 0)
        self.figures.receiver_faults = sum(
            (Counter({k: v for k, v in r.outcomes.items() if k != "204"}) for r in self.receivers), Counter()
        )
        self.dials.flush()
        self.hooks.flush()
        self.truth_journal.flush()
        await self._check(verdict, drained)
        self.figures.wall_seconds = time.monotonic() - started
        self.figures.failed_checks = verdict.checks
        self.figures.violations = verdict.lines()
        return self.figures

    async def _database(self) -> None:
        """SQLite: the harness's file. PostgreSQL: a database of its own, behind the proxy."""
        h = self.h
        if self.engine == "sqlite":
            self.sqlite_lock = SqliteLock(h.db_path)
            return
        from psycopg2.extensions import make_dsn, parse_dsn

        dsn = create_database(self.helpers)
        where = parse_dsn(dsn)
        self.proxy = PostgresProxy(where.get("host", "127.0.0.1"), int(where.get("port", 5432)))
        await self.proxy.start()
        self.helpers.addCleanup(self.proxy.stop)
        h.database = f"backend = postgresql\ndsn = {make_dsn(dsn, host='127.0.0.1', port=self.proxy.port)}\n"

    async def _start_gateway(self) -> None:
        process = self.process
        await self.h.start_gateway(self.sim_port, io=process.reactor, clock=process.clock, stop_at_cleanup=False)
        process.adopt_pool(self.h.store._pool)

    async def _stop(self) -> None:
        await self.h.stop_gateway()
        for process in self.dead:
            process.release()
        if self.sqlite_lock is not None:
            self.sqlite_lock.release()

    async def _heap(self) -> Heap:
        """`heap`, with what would blur it out of the way.

        The webhook sender's idle keep-alive connections (up to 10, tens of
        blocks at each end) are closed first: how many happen to be open
        must not count as growth. The journals' buffers are written.
        """
        await self.h.gateway.webhooks._pool.closeCachedConnections()
        await poll(lambda: not any(receiver.connections for receiver in self.receivers))
        for journal in (self.dials, self.hooks, self.truth_journal):
            journal.flush()
        return heap()

    def _count_log(self, event: dict) -> None:
        level = event.get("log_level")
        if level is not None and level >= LogLevel.warn:
            self.figures.logged[level.name] += 1
            excused = self._database_away()
            if level >= LogLevel.error and not excused and len(self.log_samples) < 2:
                self.log_samples.append(" ".join(formatEvent(event).split())[:300])
            if level >= LogLevel.error and not excused:
                self.figures.logged["unexcused"] += 1

    def _database_away(self) -> bool:
        """Whether the database is away, or was a moment ago."""
        return self.outage is not None or self._recent("store", RECOVERY_SEC)

    def _recent(self, fault: str, seconds: float) -> bool:
        now = self.h.clock.seconds()
        return any(w.fault == fault and w.end is not None and now - w.end < seconds for w in self.windows[-5:])

    async def _batch(self, first: int, end: int, verdict: Verdict) -> bool:
        """Dial calls ``first`` to ``end`` at `rate` per clock second, then drain; whether it drained."""
        budget = 0.0
        number = first
        while number < end:
            budget += self.rate * self.STEP
            while budget >= 1.0 and number < end:
                budget -= 1.0
                if number == self.next_fault:
                    await self._fault()
                    self.next_fault = self._fault_after(number)
                self._launch(make_plan(self.rng, number))
                number += 1
            await self._step(self.STEP)
        return await self._drain(verdict)

    def _fault_after(self, number: int) -> int:
        """The dial before which the next fault comes: `cut_every` apart, give or take half."""
        return number + self.rng.randint(self.cut_every // 2, self.cut_every * 3 // 2)

    async def _fault(self) -> None:
        """The next fault of the current round (a random order of the enabled
        faults); one that is still going on is passed over."""
        for _ in range(len(self.faults)):
            if not self.round:
                self.round = self.rng.sample(self.faults, len(self.faults))
            fault = self.round.pop()
            if await getattr(self, "_fault_" + fault)():
                return

    async def _fault_esl(self) -> bool:
        if self.down is not None:
            return False
        self.windows.append(Window("esl", self.h.clock.seconds(), self.h.clock.seconds()))
        self.figures.cuts += 1
        self.h.simulator.drop_connections()
        return True

    async def _fault_restart(self) -> bool:
        self.windows.append(Window("restart", self.h.clock.seconds(), self.h.clock.seconds()))
        self.figures.cuts += 1
        self.figures.restarts += 1
        self.truth.restart()
        return True

    async def _fault_store(self) -> bool:
        if self.outage is not None:
            return False
        if self.sqlite_lock is not None:
            self.sqlite_lock.hold()
        elif self.proxy is not None:
            await self.proxy.go_away()
        self.outage = Window("store", self.h.clock.seconds())
        self.windows.append(self.outage)
        self.outage_until = time.monotonic() + self.rng.uniform(*STORE_OUTAGE_SEC)
        self.figures.store_outages += 1
        return True

    async def _end_outage(self) -> None:
        if self.sqlite_lock is not None:
            self.sqlite_lock.release()
        elif self.proxy is not None:
            await self.proxy.start()
        assert self.outage is not None
        self.outage.end = self.h.clock.seconds()
        self.outage = None

    async def _fault_blackhole(self) -> bool:
        if self.blackhole is not None:
            return False
        now = self.h.clock.seconds()
        self.blackhole = Window("blackhole", now, now + self.rng.uniform(*BLACKHOLE_SEC))
        self.windows.append(self.blackhole)
        self.receivers[1].black_holed = True
        self.figures.blackholes += 1
        return True

    async def _fault_kill(self) -> bool:
        if self.down is not None:
            return False
        gateway = self.h.gateway
        self.old_results += Counter(gateway.webhooks.results)
        self.process.kill()
        self.dead.append(self.process)
        # Its services still say "running": none of their stop code may run.
        Service.stopService(gateway)
        now = self.h.clock.seconds()
        self.down = Window("kill", now)
        self.windows.append(self.down)
        self.restart_at = now + self.rng.uniform(*DOWNTIME_SEC)
        self.figures.kills += 1
        return True

    async def _restart_gateway(self) -> None:
        self.process = Mortal(reactor, self.h.clock)
        await self._start_gateway()
        assert self.down is not None
        self.down.end = self.h.clock.seconds()
        self.down = None

    async def _faults_over(self) -> None:
        """End the faults whose time is up."""
        now = self.h.clock.seconds()
        if self.outage is not None and time.monotonic() >= self.outage_until:
            await self._end_outage()
        if self.blackhole is not None and now >= (self.blackhole.end or 0.0):
            self.receivers[1].black_holed = False
            self.blackhole = None
        if self.down is not None and now >= self.restart_at:
            await self._restart_gateway()
        if self.dead:
            self.dead = [process for process in self.dead if process.release()]

    def _launch(self, plan: Plan) -> None:
        self.active += 1
        self.figures.scenarios[plan.digit] += 1

        def done(result: object) -> None:
            self.active -= 1

        def failed(failure: Any) -> None:
            self.errors.append(failure.value)

        Deferred.fromCoroutine(self._call(plan)).addErrback(failed).addBoth(done)

    async def _http(self, method: str, path: str, app: int, body: bytes | None = None,
                    headers: dict[str, str] | None = None):
        """One request of ``app``; sent again while the gateway is killed or restarting."""
        app_id, key = self.apps[app]
        headers = {"X-App-ID": app_id, "X-API-Key": key, **(headers or {})}
        if body is not None:
            headers["Content-Type"] = "application/json"
        while True:
            kills = self.figures.kills
            self.requests += 1
            try:
                return await self.h.http.request(method, path, headers, body)
            except LOST_REQUEST:
                if kills == self.figures.kills and self.down is None:
                    raise
            finally:
                self.requests -= 1
            self.figures.dials_retried += 1
            await self._sleep(1)

    def _sleep(self, seconds: float) -> Deferred:
        return task.deferLater(self.h.clock, seconds, lambda: None)

    async def _call(self, plan: Plan) -> None:
        body = json.dumps({
            "to": plan.to, "from": CALLER_ID, "timeout_sec": plan.timeout_sec,
            "max_duration_sec": plan.max_duration_sec, "metadata": {"call": plan.number},
        }).encode()
        key = {"Idempotency-Key": f"soak-{plan.number}"}
        while True:
            reply = await self._http("POST", "/api/v1/dial", plan.app, body, key)
            if reply.status == 202:
                break
            if reply.status == 500 and self._database_away():
                # Documented (failure-modes.md): nothing stored, no call placed.
                self.figures.dials_refused += 1
                await self._sleep(1)
                continue
            if reply.status not in (429, 503):
                raise AssertionError(f"call {plan.number}: dial answered {reply.status} {reply.body!r}")
            # Nothing stored, no call placed (README): safe to retry later.
            self.figures.dials_refused += 1
            await self._sleep(int(reply.headers.get("retry-after", "1")))
        session_uuid = reply.json()["session_uuid"]
        deleted = "-"
        if plan.delete_after is not None:
            await self._sleep(plan.delete_after)
            reply = await self._http("DELETE", f"/api/v1/dial/{session_uuid}", plan.app)
            while reply.status == 500 and self._database_away():
                await self._sleep(1)
                reply = await self._http("DELETE", f"/api/v1/dial/{session_uuid}", plan.app)
            if reply.status not in (200, 202):
                raise AssertionError(f"call {plan.number}: DELETE answered {reply.status} {reply.body!r}")
            self.figures.deletes += 1
            deleted = "deleted"
        self.dials.write(f"{plan.number} {session_uuid} {plan.digit} {deleted} {plan.app} "
                         f"{plan.max_duration_sec}\n")

    async def _step(self, seconds: float) -> None:
        if self.errors:
            raise self.errors[0]
        # The simulator records every byte and command it gets, for tests
        # to inspect; the soak does not, and would see them as growth.
        self.h.simulator.received.clear()
        self.h.simulator.commands.clear()
        if self.outage is not None:
            # The database is away: time runs as it does, the gateway's
            # retries meet the database's own timeouts.
            await task.deferLater(reactor, seconds, lambda: None)
            self.h.clock.advance(seconds)
        else:
            self.h.clock.advance(seconds)
            await self._settle()
        await self._faults_over()

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

    def _faulting(self) -> bool:
        return self.outage is not None or self.down is not None or self.blackhole is not None

    async def _drain(self, verdict: Verdict, limit: float = DRAIN_LIMIT_SEC) -> bool:
        """Step the clock until every call ended and every webhook is settled,
        and the faults are over; whether that happened within ``limit``."""
        h = self.h
        waited = 0.0
        checked = 0
        while True:
            busy = bool(
                self._faulting() or self.active or len(h.gateway.tracker)
                or not h.gateway.connections["fs1"].ready
            )
            if not busy and checked <= 0:
                if not h.gateway.webhooks.in_flight and await h.store.count_pending_events() == 0:
                    return True
                checked = 10  # the count is a query: not every step
            if waited > limit:
                await self._not_drained(verdict, limit)
                return False
            step = self.STEP if busy else self.IDLE_STEP
            await self._step(step)
            waited += step
            checked -= 1

    async def _not_drained(self, verdict: Verdict, limit: float) -> None:
        h = self.h
        pending = await h.store.count_pending_events()
        stranded = await h.store.live_sessions(h.gateway.settings.node.id)
        verdict.add("drained", f"not drained after {limit:.0f} clock seconds",
                    f"{self.active} calls dialing, {len(h.gateway.tracker)} sessions followed, "
                    f"{len(stranded)} sessions live in the store, {pending} webhooks pending")
        for session in stranded[:2]:
            verdict.add("drained", "sessions still live in the store",
                        await self._history(session.session_uuid))

    async def _history(self, session_uuid: str) -> str:
        """One session's story, short: its rows and what the switch did, relative to the start."""
        h = self.h
        session = await h.store.get_session(session_uuid)
        events = await h.store.session_events(session_uuid)
        truth = read_truth(self.truth_path).get(ids.channel_of(session_uuid)) if session else None

        def t(at: float | None) -> str:
            return "-" if at is None else f"{at - NOW:.2f}"

        steps = ", ".join(f"{e.status}@{t(e.occurred_at)}{'/' + e.delivery_state}" for e in events)
        switch = (f"switch: answered {t(truth.answered_at)} ended {t(truth.ended_at)} {truth.cause}"
                  if truth else "switch: no channel")
        faults = ", ".join(
            f"{w.fault}@{t(w.start)}" + (f"-{t(w.end)}" if w.end != w.start else "")
            for w in self.windows
            if session is not None and w.overlaps(session.started_at, (truth and truth.ended_at)
                                                  or session.ended_at or h.clock.seconds(), 5.0)
        )
        status = f"{session.status} answered_at {t(session.answered_at)} ended_at {t(session.ended_at)} " \
                 f"{session.hangup_cause}" if session else "no row"
        return f"{session_uuid}: {status}; events {steps}; {switch}; faults near: {faults or 'none'}"

    # -- checking ------------------------------------------------------------------

    async def _check(self, verdict: Verdict, drained: bool) -> None:
        h = self.h
        dials = {}
        with open(self.dials_path) as journal:
            for line in journal:
                number, session_uuid, digit, deleted, app, max_duration = line.split()
                dials[session_uuid] = Dial(int(number), digit, deleted == "deleted", int(app), int(max_duration))
        truth = read_truth(self.truth_path)
        with open(self.hooks_path) as journal:
            # Hangup webhooks that say their end time is an estimate.
            self.estimated = {line.split()[1] for line in journal if line.split()[-1] == "1"}
        if len(dials) != self.calls:
            verdict.add("ended_once", "calls without a 202", f"{self.calls - len(dials)} of {self.calls}")
        rows = await h.store.count_rows()
        if rows["sessions"] != len(dials):
            verdict.add("ended_once", "stored sessions that no 202 gave", f"{rows['sessions']} sessions stored "
                        f"for {len(dials)} answered dials")
        await self._check_slots(verdict)

        stored: dict[str, tuple[str, int, str]] = {}  # event id -> (session, sequence, status)
        order: dict[str, list[str]] = {}  # session -> event ids by sequence
        first_at: dict[str, float] = {}  # session -> when its first event occurred
        sessions = list(dials)
        for start in range(0, len(sessions), 16):
            chunk = sessions[start:start + 16]
            views = await _gather([self._session(session_uuid, dials[session_uuid].app) for session_uuid in chunk])
            for session_uuid, (events, session) in zip(chunk, views, strict=True):
                dial = dials[session_uuid]
                await self._check_session(verdict, session_uuid, events, session, dial,
                                          truth.get(ids.channel_of(session_uuid)))
                order[session_uuid] = [event["id"] for event in events]
                if events:
                    first_at[session_uuid] = _epoch(events[0]["occurred_at"])
                for event in events:
                    stored[event["id"]] = (session_uuid, event["sequence"], event["status"])
        await self._check_webhooks(verdict, stored, order, dials, first_at)
        f = self.figures
        if f.logged.get("unexcused"):
            verdict.add("logged", "errors logged outside database outages",
                        f"{f.logged['unexcused']} errors, first: {' | '.join(self.log_samples)}")
        if drained:
            grown = f.heap_end.blocks - f.heap_warm.blocks
            bound = HEAP_SLACK_BLOCKS + self.max_blocks_per_call * (f.calls - f.warmup_calls)
            if grown >= bound:
                verdict.add("heap", "the heap grew after the warm-up",
                            f"by {grown} blocks ({f.growth_per_call('blocks'):.1f} per call); bound {bound:.0f}")

    max_blocks_per_call = MAX_BLOCKS_PER_CALL

    async def _check_slots(self, verdict: Verdict) -> None:
        h = self.h
        for app_id, _ in self.apps:
            live = await h.store.count_live_sessions(app_id)
            if live:
                verdict.add("slots", "max_concurrent slots still taken after draining",
                            f"app {app_id}: live_sessions = {live}")
        if len(h.gateway.tracker):
            verdict.add("slots", "sessions still followed after draining", f"{len(h.gateway.tracker)} sessions")
        if h.gateway.pool.get("fs1").tracked:
            verdict.add("slots", "channels still held in the pool", f"{h.gateway.pool.get('fs1').tracked}")

    async def _session(self, session_uuid: str, app: int) -> tuple[list[dict], Any]:
        reply = await self._http("GET", f"/api/v1/dial/{session_uuid}/events", app)
        assert reply.status == 200, (session_uuid, reply.status)
        return reply.json()["events"], await self.h.store.get_session(session_uuid)

    def _blind(self, begin: float, end: float) -> bool:
        """Whether the gateway was cut off from the switch's events at some time in [begin, end]."""
        return any(w.fault in BLIND_FAULTS and w.overlaps(begin, end, CUT_SLACK_SEC) for w in self.windows)

    async def _check_session(self, verdict: Verdict, session_uuid: str, events: list[dict], session: Any,
                             dial: Dial, truth: Truth | None) -> None:
        f = self.figures
        where = f"call {dial.number} (scenario {dial.digit})"
        statuses = [event["status"] for event in events]
        ranks = [STATUSES.index(status) for status in statuses]
        if (
            [event["sequence"] for event in events] != list(range(1, len(events) + 1))
            or statuses.count("ended") != 1 or statuses[-1] != "ended" or statuses[0] != "dialing"
            or ranks != sorted(set(ranks))
        ):
            what = "never ended" if "ended" not in statuses else "not ended exactly once, forward"
            verdict.add("ended_once", f"sessions {what}", f"{where} {await self._history(session_uuid)}")
            return
        f.sessions_ended += 1

        cause = events[-1]["hangup_cause"]
        begin, end = _epoch(events[0]["occurred_at"]), _epoch(events[-1]["occurred_at"])
        if truth is not None and truth.ended_at is not None:
            end = max(end, truth.ended_at)
        faulted = self._blind(begin, end)
        path, natural = NATURAL[dial.digit]
        allowed = {natural}
        if dial.deleted:
            allowed |= DELETE_CAUSES
        if faulted:
            allowed |= FAULT_CAUSES
            f.sessions_hit_by_faults += 1
        if cause not in allowed:
            verdict.add("cause", "sessions ended with a cause neither their scenario's nor a fault's",
                        f"{where} ended {cause}, expected one of {sorted(allowed)}: "
                        f"{await self._history(session_uuid)}")
        elif not (dial.deleted or faulted) and tuple(statuses) != path:
            verdict.add("cause", "sessions that skipped a status though nothing cut them off",
                        f"{where} went {statuses}, expected {list(path)}: {await self._history(session_uuid)}")
        f.causes[cause] += 1
        await self._check_times(verdict, where, session_uuid, events[-1], session, dial, truth)

    async def _check_times(self, verdict: Verdict, where: str, session_uuid: str, ended: dict, session: Any,
                           dial: Dial, truth: Truth | None) -> None:
        """The recorded times are the switch's; the duration within ``max_duration_sec``."""
        duration = ended.get("duration_sec") or 0
        problems = []
        if duration > dial.max_duration_sec:
            problems.append(("duration_sec above max_duration_sec",
                             f"duration_sec {duration} > max_duration_sec {dial.max_duration_sec}: "))
        answered = truth.answered_at if truth is not None else None
        true_end = truth.ended_at if truth is not None else None
        if session.answered_at is not None and (
            answered is None or abs(session.answered_at - answered) > TIME_SLACK_SEC
        ):
            problems.append(("answered_at is not when the switch answered", ""))
        if session.answered_at is None and answered is not None and not self._blind(answered, true_end or answered):
            problems.append(("answered_at null though the switch answered while the gateway saw its events", ""))
        estimated = bool(ended.get("ended_at_estimated")) or ended["id"] in self.estimated
        if (
            true_end is not None and not estimated and session.ended_at is not None
            and abs(session.ended_at - true_end) > TIME_SLACK_SEC
        ):
            problems.append(("ended_at is not the switch's end, and not marked estimated", ""))
        for what, detail in problems:
            verdict.add("timestamps", what, f"{detail}{where} {await self._history(session_uuid)}")

    async def _check_webhooks(self, verdict: Verdict, stored: dict[str, tuple[str, int, str]],
                              order: dict[str, list[str]], dials: dict[str, Dial],
                              first_at: dict[str, float]) -> None:
        """Every event acknowledged; none sent before its predecessor was,
        nor again after a 2xx unless the gateway was killed meanwhile; the
        first app's first webhooks on time."""
        f = self.figures
        acknowledged: dict[str, int] = {}  # session -> highest sequence with a 2xx
        delivered: dict[str, float] = {}  # event id -> when first acknowledged
        first_sent: dict[str, float] = {}  # session -> when its first webhook was first sent
        kills = [w.start for w in self.windows if w.fault == "kill"]
        with open(self.hooks_path) as journal:
            for line in journal:
                outcome, event_id, session_uuid, sequence, status, call, at, _ = line.split()
                f.webhook_requests += 1
                if event_id not in stored or stored[event_id] != (session_uuid, int(sequence), status):
                    verdict.add("webhooks", "webhooks that match no stored event", line.strip())
                    continue
                if call != str(dials[session_uuid].number):
                    verdict.add("webhooks", "webhooks with another call's metadata", line.strip())
                done = acknowledged.get(session_uuid, 0)
                if int(sequence) > done + 1:
                    verdict.add("webhooks", "webhooks sent before the one before them was acknowledged",
                                f"event {sequence} of {session_uuid} sent before event {done + 1} was: "
                                f"{await self._history(session_uuid)}")
                if int(sequence) == 1:
                    first_sent.setdefault(session_uuid, float(at))
                if outcome == "204":
                    if event_id in delivered:
                        f.webhook_redeliveries += 1
                        if not any(delivered[event_id] <= kill <= float(at) for kill in kills):
                            verdict.add("webhooks", "webhooks sent again after a 2xx with no kill between",
                                        f"{event_id} of {await self._history(session_uuid)}")
                    else:
                        delivered[event_id] = float(at)
                    acknowledged[session_uuid] = max(done, int(sequence))
        missing = sorted(set(stored) - set(delivered), key=lambda e: stored[e])
        for number, event_id in enumerate(missing):
            # Every one counted; the first two told.
            example = f"{event_id}: {await self._history(stored[event_id][0])}" if number < 2 else ""
            verdict.add("webhooks", "webhooks never acknowledged", example)
        f.webhooks = len(delivered)
        recovering = [w for w in self.windows if w.fault in ("store", "kill")]
        late = []
        for session_uuid, dial in dials.items():
            if dial.app != 0 or session_uuid not in first_at:
                continue
            occurred = first_at[session_uuid]
            sent = first_sent.get(session_uuid)
            if any(w.overlaps(occurred, occurred, RECOVERY_SEC) for w in recovering):
                continue
            if sent is None or sent - occurred > FAIRNESS_SEC:
                late.append((sent - occurred if sent is not None else float("inf"), session_uuid))
        for number, (delay, session_uuid) in enumerate(sorted(late, reverse=True)):
            example = ""
            if number < 2:
                blackholes = [w for w in self.windows if w.fault == "blackhole"
                              and w.overlaps(first_at[session_uuid], first_at[session_uuid], FAIRNESS_SEC)]
                example = (f"{delay:.1f} s ({len(blackholes)} black hole(s) on meanwhile): "
                           f"{await self._history(session_uuid)}")
            verdict.add("fairness", f"first-app sessions whose first webhook waited over {FAIRNESS_SEC:.0f} s",
                        example)


@attrs.frozen
class Dial:
    """One call as the driver journaled it."""

    number: int
    digit: str
    deleted: bool
    app: int
    max_duration_sec: int


async def _gather(coroutines: list) -> list:
    return await gatherResults([Deferred.fromCoroutine(c) for c in coroutines], consumeErrors=True)


async def run_soak(helpers: Any, *, calls: int = 250, seed: int = 1, rate: float = 10.0,
                   warmup: int | None = None, cut_every: int = 100,
                   receiver_faults: ReceiverFaults = ReceiverFaults(),
                   faults: frozenset[str] = frozenset(FAULTS), engine: str = "sqlite",
                   max_blocks_per_call: float = MAX_BLOCKS_PER_CALL) -> SoakFigures:
    """Run ``calls`` calls through a whole gateway with faults; check; the figures.

    ``helpers`` is what `Harness` needs of a trial `TestCase`
    (``addCleanup``, ``mktemp``). ``rate`` is dials per clock second; about
    one dial in ``cut_every`` is preceded by a fault, drawn from ``faults``.
    The figures' ``failed_checks`` and ``violations`` say what broke (empty
    when every promise held).

    Run it in a process of its own (`main`, as ``make soak`` and
    ``tests/test_soak.py`` do): a trial worker under ``--jobs`` keeps every
    log event of a test until the test ends, and the gateway logs a dozen
    per call, which the heap check would take for a leak.
    """
    warmup = warmup if warmup is not None else max(50, calls // 10)
    soak = Soak(helpers, calls=calls, seed=seed, rate=rate, warmup=min(warmup, calls // 2),
                cut_every=cut_every, receiver_faults=receiver_faults, faults=faults, engine=engine)
    soak.max_blocks_per_call = max_blocks_per_call
    return await soak.run()


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


def fault_list(text: str) -> frozenset[str]:
    """``--faults``: a comma-separated list of `FAULTS` (``all``, or ``none``)."""
    if text == "all":
        return frozenset(FAULTS)
    names = frozenset(name.strip() for name in text.split(",") if name.strip() and name.strip() != "none")
    unknown = names - set(FAULTS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown faults: {', '.join(sorted(unknown))} "
                                         f"(known: {', '.join(FAULTS)})")
    return names


def check_list(text: str) -> frozenset[str]:
    """``--skip-checks``: a comma-separated list of `CHECKS`."""
    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    unknown = names - set(CHECKS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown checks: {', '.join(sorted(unknown))} "
                                         f"(known: {', '.join(CHECKS)})")
    return names


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.soak [--calls N] [--faults LIST] [--engine E] ...``: run, print the figures.

    Exits with status 1 if a check fails, after the diagnosis on stderr
    (one ``[check] N x what`` line per broken promise, with examples).
    """
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak", description=__doc__.split("\n\n")[0],
        epilog="faults: " + "; ".join(f"{name}: {text}" for name, text in FAULT_HELP.items()),
    )
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=10.0, help="dials per clock second")
    parser.add_argument("--cut-every", type=int, default=100, help="about one fault per N dials")
    parser.add_argument("--faults", type=fault_list, default=frozenset(FAULTS),
                        help=f"comma-separated, of {','.join(FAULTS)} (default: all; or none)")
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--skip-checks", type=check_list, default=frozenset(),
                        help=f"comma-separated checks not to enforce, of {','.join(CHECKS)} (still reported)")
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
                cut_every=options.cut_every, warmup=options.warmup, faults=options.faults,
                engine=options.engine,
            )
        except BaseException:
            # The log goes nowhere (above): say why here.
            traceback.print_exc()
            print("soak FAILED (it could not finish)", file=sys.stderr)
            raise
        finally:
            await scratch.cleanup()
        skipped = [check for check in figures.failed_checks if check in options.skip_checks]
        figures.failed_checks = [check for check in figures.failed_checks if check not in skipped]
        if figures.violations:
            print(f"soak {'FAILED' if figures.failed_checks else 'passed'}: "
                  f"{', '.join(figures.failed_checks) or 'no enforced check'} failed"
                  + (f" (not enforced: {', '.join(skipped)})" if skipped else ""), file=sys.stderr)
            for line in figures.violations:
                print("  " + line, file=sys.stderr)
        else:
            print("soak passed: every session ended once, every webhook delivered in order, memory flat")
        for line in figures.lines():
            print("  " + line)
        if options.json:
            print(json.dumps(attrs.asdict(figures)))
        if figures.failed_checks:
            raise SystemExit(1)

    task.react(lambda r: Deferred.fromCoroutine(soak(r)))


if __name__ == "__main__":
    main()
