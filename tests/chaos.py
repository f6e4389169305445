"""The faults the soak (`tests.soak`) injects beyond ESL cuts, and what it
needs to judge the gateway afterwards.

- `Mortal`: a gateway's reactor and clock that can be killed as by
  ``kill -9``: from that instant none of its code runs again (its timers,
  its thread results and its sockets' events are dropped), its sockets are
  closed without a word (no ESL ``exit``, no HTTP answer), and nothing it
  had not yet handed to the database is written. A transaction already
  running in the database thread finishes, as if the kill had landed just
  after it; its result is never seen.
- `SqliteLock`: another connection holding ``BEGIN IMMEDIATE`` on the
  gateway's SQLite file (writes wait ``busy_timeout``, then fail).
- `PostgresProxy`: a TCP proxy between the gateway and PostgreSQL that
  cuts every connection and refuses new ones for a while.
- `SwitchTruth`: when the switch really answered and ended each channel,
  journaled to a file (the soak's own memory must not grow).
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Callable
from typing import IO, Any

import attrs
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import ClientFactory, Factory
from twisted.protocols.policies import WrappingFactory
from twisted.protocols.portforward import ProxyFactory
from zope.interface import directlyProvides, providedBy

#: Every fault the soak knows, in the order a round of faults is drawn from.
FAULTS = ("esl", "restart", "store", "blackhole", "kill")
#: What each fault does (``python -m tests.soak --help``, docs/development.md).
FAULT_HELP = {
    "esl": "the ESL connection is cut (calls go on; their events meanwhile are lost)",
    "restart": "the switch restarts (connections cut, every call forgotten)",
    "store": "the database stalls or goes away for 2-8 s (SQLite: another connection holds "
             "BEGIN IMMEDIATE; PostgreSQL: a proxy cuts and refuses connections)",
    "blackhole": "the second app's receiver accepts webhooks and never answers, for 60-120 s",
    "kill": "the gateway is killed as by kill -9 and started again 1-5 s later on the same database",
}
#: The faults that cut the gateway off from the switch's events: a session
#: alive meanwhile may end with a fault cause, and its true times may be
#: unknowable.
BLIND_FAULTS = frozenset({"esl", "restart", "kill"})


class Killed(Exception):
    """Work asked of a killed gateway's database thread."""


class Mortal:
    """One gateway process's reactor and clock, which `kill` ends at once."""

    def __init__(self, io: Any, clock: Any) -> None:
        self.dead = False
        self.reactor = _MortalReactor(self, io)
        self.clock = _MortalClock(self, clock)
        self._io = io
        self._timers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._ports: list[Any] = []
        self._connectors: weakref.WeakSet[Any] = weakref.WeakSet()
        self._accepted: weakref.WeakSet[Any] = weakref.WeakSet()
        self._pools: list[Any] = []

    def guard(self, function: Callable[..., object]) -> Callable[..., object]:
        """``function``, made to do nothing once the process is dead."""

        def guarded(*args: Any, **kwargs: Any) -> object:
            if self.dead:
                return None
            return function(*args, **kwargs)

        return guarded

    def timer(self, call: Any) -> Any:
        self._timers.add(call)
        return call

    def adopt_pool(self, pool: Any) -> None:
        """Make the database thread pool of ``pool`` (an adbapi pool) mortal:
        work that starts after the kill fails at once, touching nothing."""
        threads = pool.threadpool
        submit = threads.callInThreadWithCallback

        def guarded_submit(on_result: Any, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
            def run(*args: Any, **kwargs: Any) -> Any:
                if self.dead:
                    raise Killed()
                return function(*args, **kwargs)

            submit(on_result, run, *args, **kwargs)

        threads.callInThreadWithCallback = guarded_submit
        self._pools.append(pool)

    def kill(self) -> None:
        """``kill -9``: nothing more runs, every socket is closed by the kernel."""
        self.dead = True
        for call in list(self._timers):
            if call.active():
                call.cancel()
        self._timers = weakref.WeakSet()
        for port in self._ports:
            _vanish(self._io, port)
        self._ports.clear()
        for connector in list(self._connectors):
            transport = getattr(connector, "transport", None)
            if transport is not None:
                _vanish(self._io, transport)
        for transport in list(self._accepted):
            _vanish(self._io, transport)
        self._connectors = weakref.WeakSet()
        self._accepted = weakref.WeakSet()

    def release(self) -> None:
        """Free what the dead process held (its database threads and
        connections): at once if its pools are idle, else call again later.
        Returns whether anything is still held."""
        for pool in list(self._pools):
            if not pool.threadpool.working:
                pool.close()
                self._pools.remove(pool)
        return bool(self._pools)


def _vanish(io: Any, selectable: Any) -> None:
    """Close a socket as the kernel does for a killed process: no callback runs."""
    io.removeReader(selectable)
    io.removeWriter(selectable)
    for name in ("_timeoutCall", "timeoutID"):
        call = getattr(selectable, name, None)
        if call is not None and getattr(call, "active", lambda: False)():
            call.cancel()
    sock = getattr(selectable, "socket", None)
    if sock is not None:
        sock.close()


class _MortalClock:
    """The shared `task.Clock` as the gateway sees it; silent once dead."""

    def __init__(self, process: Mortal, clock: Any) -> None:
        self._process = process
        self._clock = clock

    def seconds(self) -> float:
        return float(self._clock.seconds())

    def callLater(self, delay: float, function: Callable[..., object], *args: Any, **kwargs: Any) -> Any:
        process = self._process
        return process.timer(self._clock.callLater(delay, process.guard(function), *args, **kwargs))

    def getDelayedCalls(self) -> Any:
        return self._clock.getDelayedCalls()


class _Tracked(Factory):
    """A listening factory that remembers the connections it accepts."""

    def __init__(self, process: Mortal, wrapped: Any) -> None:
        self._process = process
        self._wrapped = wrapped

    def doStart(self) -> None:
        self._wrapped.doStart()

    def doStop(self) -> None:
        self._wrapped.doStop()

    def buildProtocol(self, addr: Any) -> Any:
        if self._process.dead:
            return None
        protocol = self._wrapped.buildProtocol(addr)
        return _AcceptedBy(self._process, protocol) if protocol is not None else None


def _AcceptedBy(process: Mortal, protocol: Any) -> Any:
    """``protocol``, its transport remembered when it is connected."""
    make_connection = protocol.makeConnection

    def made(transport: Any) -> None:
        process._accepted.add(transport)
        make_connection(transport)

    protocol.makeConnection = made
    return protocol


class _TrackedClient(ClientFactory):
    """A connecting factory whose callbacks stop with the process."""

    def __init__(self, process: Mortal, wrapped: Any) -> None:
        self._process = process
        self._wrapped = wrapped

    def doStart(self) -> None:
        self._wrapped.doStart()

    def doStop(self) -> None:
        self._wrapped.doStop()

    def startedConnecting(self, connector: Any) -> None:
        if not self._process.dead:
            self._wrapped.startedConnecting(connector)

    def buildProtocol(self, addr: Any) -> Any:
        return None if self._process.dead else self._wrapped.buildProtocol(addr)

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        if not self._process.dead:
            self._wrapped.clientConnectionFailed(connector, reason)

    def clientConnectionLost(self, connector: Any, reason: Any) -> None:
        if not self._process.dead:
            self._wrapped.clientConnectionLost(connector, reason)


class _MortalReactor:
    """The reactor as the gateway sees it: I/O it starts is tracked (for
    `Mortal.kill`), and once dead its timers and thread results are dropped."""

    def __init__(self, process: Mortal, io: Any) -> None:
        self._process = process
        self._io = io
        directlyProvides(self, providedBy(io))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._io, name)

    def callLater(self, delay: float, function: Callable[..., object], *args: Any, **kwargs: Any) -> Any:
        process = self._process
        return process.timer(self._io.callLater(delay, process.guard(function), *args, **kwargs))

    def callFromThread(self, function: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        self._io.callFromThread(self._process.guard(function), *args, **kwargs)

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        listening = self._io.listenTCP(port, _Tracked(self._process, factory), backlog, interface)
        self._process._ports.append(listening)
        return listening

    def connectTCP(self, host: str, port: int, factory: Any, timeout: float = 30,
                   bindAddress: Any = None) -> Any:
        connector = self._io.connectTCP(host, port, _TrackedClient(self._process, factory), timeout, bindAddress)
        if self._process.dead:
            connector.stopConnecting()
        else:
            self._process._connectors.add(connector)
        return connector


class SqliteLock:
    """Another connection to the gateway's SQLite file, holding its write lock."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None

    def hold(self) -> None:
        """``BEGIN IMMEDIATE`` (waiting for the gateway's own transaction, if any)."""
        connection = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        self._connection = connection

    def release(self) -> None:
        if self._connection is not None:
            self._connection.execute("ROLLBACK")
            self._connection.close()
            self._connection = None


class PostgresProxy:
    """127.0.0.1:<port> forwarding to a PostgreSQL server, that can go away."""

    def __init__(self, host: str, port: int) -> None:
        self._factory = WrappingFactory(ProxyFactory(host, port))
        self._port: Any = None
        self.port = 0

    async def start(self) -> int:
        self._port = await TCP4ServerEndpoint(reactor, self.port, interface="127.0.0.1").listen(self._factory)
        self.port = self._port.getHost().port
        return self.port

    @property
    def up(self) -> bool:
        return self._port is not None

    async def go_away(self) -> None:
        """Cut every connection (both ends) and refuse new ones."""
        port, self._port = self._port, None
        if port is not None:
            await port.stopListening()
        for protocol in list(self._factory.protocols):
            protocol.transport.abortConnection()
            peer = getattr(protocol.wrappedProtocol, "peer", None)
            if peer is not None and peer.transport is not None:
                peer.transport.abortConnection()

    async def stop(self) -> None:
        await self.go_away()


@attrs.define
class Truth:
    """What the switch really did with one channel (clock seconds)."""

    answered_at: float | None = None
    ended_at: float | None = None
    cause: str | None = None


class SwitchTruth:
    """Journals, from the simulated switch itself, when each channel was
    answered and ended (and the calls a restart dropped)."""

    def __init__(self, simulator: Any, journal: IO[str]) -> None:
        self._simulator = simulator
        self._journal = journal
        switch = simulator.switch
        fire = switch.fire

        def fired(event: Any) -> None:
            name = event.name
            if name in ("CHANNEL_ANSWER", "CHANNEL_HANGUP"):
                usec = event.get("Event-Date-Timestamp") or "0"
                cause = event.get("Hangup-Cause") or "-"
                journal.write(f"{name} {event.get('Unique-ID')} {int(usec) / 1_000_000!r} {cause}\n")
            fire(event)

        switch.fire = fired

    def restart(self) -> None:
        """Restart the switch: its calls end now, without an event."""
        simulator = self._simulator
        now = simulator.clock.seconds()
        for uuid in list(simulator.calls):
            self._journal.write(f"CHANNEL_HANGUP {uuid} {now!r} RESTART\n")
        simulator.restart()


def read_truth(path: str) -> dict[str, Truth]:
    """Channel uuid -> what the switch did, from a `SwitchTruth` journal."""
    truth: dict[str, Truth] = {}
    with open(path) as journal:
        for line in journal:
            name, uuid, at, cause = line.split()
            channel = truth.setdefault(uuid, Truth())
            if name == "CHANNEL_ANSWER":
                channel.answered_at = float(at)
            elif channel.ended_at is None:
                channel.ended_at, channel.cause = float(at), cause
    return truth


@attrs.define
class Violation:
    """One broken promise: which, how many sessions, and a few of them."""

    check: str
    what: str
    count: int = 0
    examples: list[str] = attrs.field(factory=list)

    def add(self, example: str, keep: int = 2) -> None:
        self.count += 1
        if len(self.examples) < keep:
            self.examples.append(example)

    def lines(self) -> list[str]:
        return [f"[{self.check}] {self.count} x {self.what}", *(f"    e.g. {e}" for e in self.examples)]


class Verdict:
    """The violations found, by check and kind; `lines` is the diagnosis."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, str], Violation] = {}

    def add(self, check: str, what: str, example: str) -> None:
        key = (check, what)
        if key not in self._found:
            self._found[key] = Violation(check, what)
        self._found[key].add(example)

    @property
    def checks(self) -> list[str]:
        """The checks that failed, in the order first found."""
        return list(dict.fromkeys(check for check, _ in self._found))

    def __bool__(self) -> bool:
        return bool(self._found)

    def lines(self) -> list[str]:
        return [line for violation in self._found.values() for line in violation.lines()]
