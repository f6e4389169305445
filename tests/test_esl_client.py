"""NodeConnection: reconnect with backoff, readiness, the silence watchdog."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dialgw.esl.client import NodeConnection, NodeUnavailable
from dialgw.esl.frames import Event
from dialgw.esl.protocol import ESLInjectionError

from . import esl_fixtures as fx

AUTH_REQUEST = b"Content-Type: auth/request\n\n"
ACCEPTED = b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
SUBSCRIBED = b"Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n"
EVENT_NAMES = ["CHANNEL_ANSWER", "BACKGROUND_JOB", "HEARTBEAT"]
SUBSCRIBE = b"event plain CHANNEL_ANSWER BACKGROUND_JOB HEARTBEAT\n\n"


def api_response(body: bytes) -> bytes:
    return b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(body), body)


def heartbeat_frame() -> bytes:
    body = b"Event-Name: HEARTBEAT\nCore-UUID: c0re\nSession-Count: 7\nMax-Sessions: 1000\n\n"
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(body), body)


class KeepAliveTransport(StringTransport):
    keepalive: int | None = None

    def setTcpKeepAlive(self, enabled: int) -> None:
        self.keepalive = enabled


class FakeEndpoint:
    """Connection attempts the test completes, refuses or drops by hand."""

    def __init__(self) -> None:
        self.attempts: list[tuple[Factory, Deferred]] = []
        self.connections: list[tuple[Protocol, KeepAliveTransport]] = []

    def connect(self, factory: Factory) -> Deferred:
        d: Deferred = Deferred()
        self.attempts.append((factory, d))
        return d

    def accept(self) -> tuple[Protocol, KeepAliveTransport]:
        factory, d = self.attempts[-1]
        proto = factory.buildProtocol(None)
        transport = KeepAliveTransport()
        proto.makeConnection(transport)
        self.connections.append((proto, transport))
        d.callback(proto)
        return proto, transport

    def refuse(self) -> None:
        self.attempts[-1][1].errback(ConnectionRefusedError())


class Harness:
    def __init__(self, heartbeat_sec: float = 20.0, delays: dict[int, float] | None = None) -> None:
        self.clock = Clock()
        self.endpoint = FakeEndpoint()
        self.events: list[Event] = []
        self.readies: list[NodeConnection] = []
        self.losses: list[NodeConnection] = []
        self.attempts_asked: list[int] = []
        delays = delays or {}

        def policy(attempt: int) -> float:
            self.attempts_asked.append(attempt)
            return delays.get(attempt, float(attempt))

        self.node = NodeConnection(
            name="fs1",
            endpoint=self.endpoint,
            password="ClueCon",
            heartbeat_sec=heartbeat_sec,
            event_names=EVENT_NAMES,
            clock=self.clock,
            on_event=lambda node, event: self.events.append(event),
            on_ready=self.readies.append,
            on_lost=self.losses.append,
            retry_policy=policy,
        )

    def connect(self) -> tuple[Protocol, KeepAliveTransport]:
        proto, transport = self.endpoint.accept()
        proto.dataReceived(AUTH_REQUEST)
        assert transport.value() == b"auth ClueCon\n\n", transport.value()
        transport.clear()
        proto.dataReceived(ACCEPTED)
        assert transport.value() == SUBSCRIBE, transport.value()
        transport.clear()
        proto.dataReceived(SUBSCRIBED)
        return proto, transport


class NodeConnectionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.h.node.startService()
        self.addCleanup(self._stop)

    def _stop(self) -> None:
        if self.h.node.running:
            d = self.h.node.stopService()
            for proto, transport in self.h.endpoint.connections:
                if transport.disconnecting and proto.is_connected:
                    proto.connectionLost(Failure(ConnectionDone()))
            self.successResultOf(d)

    def test_ready_after_auth_and_subscribe(self) -> None:
        node = self.h.node
        self.assertEqual(len(self.h.endpoint.attempts), 1)
        proto, transport = self.h.endpoint.accept()
        self.assertFalse(node.ready)
        self.assertEqual(transport.keepalive, 1)
        proto.dataReceived(AUTH_REQUEST + ACCEPTED)
        self.assertFalse(node.ready)
        self.assertEqual(self.h.readies, [])
        proto.dataReceived(SUBSCRIBED)
        self.assertTrue(node.ready)
        self.assertEqual(self.h.readies, [node])

    def test_not_ready_commands_fail_at_once(self) -> None:
        self.failureResultOf(self.h.node.api("status"), NodeUnavailable)
        self.failureResultOf(self.h.node.bgapi("status", "job-1"), NodeUnavailable)
        self.assertRaises(ESLInjectionError, self.h.node.api, "status\n\nexit")

    def test_api_and_bgapi_when_ready(self) -> None:
        proto, transport = self.h.connect()
        result = self.h.node.api("uuid_exists abc")
        self.assertEqual(transport.value(), b"api uuid_exists abc\n\n")
        proto.dataReceived(api_response(b"true"))
        self.assertEqual(self.successResultOf(result), "true")
        transport.clear()
        job = self.h.node.bgapi("status", "job-1")
        self.assertEqual(transport.value(), b"bgapi status\nJob-UUID: job-1\n\n")
        proto.dataReceived(b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: job-1\nJob-UUID: job-1\n\n")
        self.assertEqual(self.successResultOf(job).headers["Job-UUID"], "job-1")

    def test_events_and_heartbeat_info(self) -> None:
        proto, _ = self.h.connect()
        self.h.clock.advance(3)
        proto.dataReceived(fx.raw("heartbeat").split(SUBSCRIBED, 1)[1])
        self.assertEqual([e.name for e in self.h.events], ["HEARTBEAT", "HEARTBEAT"])
        node = self.h.node
        self.assertEqual(node.session_count, 0)
        self.assertEqual(node.max_sessions, 1000)
        self.assertEqual(node.core_uuid, "2d83c308-d6e3-4357-b367-2e32aa0f39f0")
        self.assertEqual(node.last_heartbeat_at, 3)

    def test_reconnect_with_backoff_after_drop(self) -> None:
        proto, _ = self.h.connect()
        proto.connectionLost(Failure(ConnectionLost()))
        self.assertFalse(self.h.node.ready)
        self.assertEqual(self.h.losses, [self.h.node])
        self.assertEqual(self.h.attempts_asked, [1])
        self.h.clock.advance(0.9)
        self.assertEqual(len(self.h.endpoint.attempts), 1)
        self.h.clock.advance(0.1)
        self.assertEqual(len(self.h.endpoint.attempts), 2)
        # The switch is down for a while: the delays grow.
        self.h.endpoint.refuse()
        self.assertEqual(self.h.attempts_asked, [1, 2])
        self.h.clock.advance(2)
        self.h.endpoint.refuse()
        self.assertEqual(self.h.attempts_asked, [1, 2, 3])
        self.h.clock.advance(3)
        self.assertEqual(len(self.h.endpoint.attempts), 4)
        self.h.connect()
        self.assertTrue(self.h.node.ready)
        self.assertEqual(self.h.readies, [self.h.node, self.h.node])

    def test_failed_auth_retries_with_growing_delay(self) -> None:
        for expected_attempt in (2, 3):
            proto, transport = self.h.endpoint.accept()
            proto.dataReceived(AUTH_REQUEST + b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n")
            self.assertTrue(transport.disconnecting)
            proto.connectionLost(Failure(ConnectionDone()))
            self.assertEqual(self.h.attempts_asked[-1], expected_attempt)
            self.h.clock.advance(expected_attempt)
        self.assertEqual(self.h.readies, [])
        self.assertEqual(self.h.losses, [])
        self.h.connect()
        self.assertTrue(self.h.node.ready)

    def test_drop_during_auth_retries(self) -> None:
        proto, _ = self.h.endpoint.accept()
        proto.dataReceived(AUTH_REQUEST)
        proto.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.h.attempts_asked, [2])
        self.h.clock.advance(2)
        self.h.connect()
        self.assertTrue(self.h.node.ready)
        self.assertEqual(self.h.losses, [])

    def test_watchdog_drops_a_silent_connection(self) -> None:
        proto, transport = self.h.connect()
        for _ in range(6):  # heartbeats keep it alive
            self.h.clock.advance(20)
            proto.dataReceived(heartbeat_frame())
        self.assertTrue(self.h.node.ready)
        self.assertFalse(transport.disconnecting)
        self.h.clock.advance(59)
        self.assertTrue(self.h.node.ready)
        self.h.clock.advance(1)
        self.assertFalse(self.h.node.ready)
        self.failureResultOf(self.h.node.api("status"), NodeUnavailable)
        self.assertTrue(transport.disconnected)  # aborted
        self.h.clock.advance(10)  # the watchdog aborts once
        proto.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.h.losses, [self.h.node])
        self.h.clock.advance(1)
        self.h.connect()
        self.assertTrue(self.h.node.ready)
        self.assertEqual(len(self.h.readies), 2)

    def test_not_ready_while_silent_before_the_watchdog_runs(self) -> None:
        h = Harness(heartbeat_sec=7)
        h.node.startService()
        proto, transport = h.connect()
        h.clock.advance(20.9)
        self.assertTrue(h.node.ready)
        h.clock.advance(0.1)  # 21 s silent; the watchdog ticks every 3.5 s
        self.assertFalse(h.node.ready)
        h.clock.advance(3.5)
        self.assertTrue(transport.disconnected)
        proto.connectionLost(Failure(ConnectionLost()))
        d = h.node.stopService()
        self.successResultOf(d)

    def test_stop_sends_exit_and_closes(self) -> None:
        proto, transport = self.h.connect()
        transport.clear()
        d = self.h.node.stopService()
        self.assertEqual(transport.value(), b"exit\n\n")
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(d)
        proto.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(d)
        self.h.clock.advance(100)
        self.assertEqual(len(self.h.endpoint.attempts), 1)

    def test_stop_while_authenticating(self) -> None:
        proto, transport = self.h.endpoint.accept()
        proto.dataReceived(AUTH_REQUEST)
        d = self.h.node.stopService()
        self.assertTrue(transport.disconnected)
        proto.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(d)
        self.h.clock.advance(100)
        self.assertEqual(len(self.h.endpoint.attempts), 1)

    def test_stop_while_waiting_to_retry(self) -> None:
        self.h.endpoint.refuse()
        self.successResultOf(self.h.node.stopService())
        self.h.clock.advance(100)
        self.assertEqual(len(self.h.endpoint.attempts), 1)


class FakeSwitch(Protocol):
    """Just enough of FreeSWITCH's inbound ESL for a loopback test."""

    def connectionMade(self) -> None:
        self.factory.connections.append(self)
        self.buffer = b""
        self.commands: list[bytes] = []
        self.closed: Deferred = Deferred()
        self.transport.write(AUTH_REQUEST)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n\n" in self.buffer:
            command, self.buffer = self.buffer.split(b"\n\n", 1)
            self.commands.append(command)
            if command.startswith(b"auth "):
                ok = command == b"auth ClueCon"
                self.transport.write(ACCEPTED if ok else b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n")
            elif command.startswith(b"event "):
                self.transport.write(SUBSCRIBED)
            elif command.startswith(b"api "):
                self.transport.write(api_response(b"UP " + command[4:]))
            elif command == b"exit":
                self.transport.write(b"Content-Type: command/reply\nReply-Text: +OK bye\n\n")
                self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:
        self.closed.callback(None)


class LoopbackTests(TestCase):
    timeout = 10
    async def _loopback_scenario(self) -> None:
        from twisted.internet import reactor

        server_factory = Factory.forProtocol(FakeSwitch)
        server_factory.connections = []
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(server_factory)
        self.addCleanup(port.stopListening)
        clock = Clock()
        readies: list[Deferred] = [Deferred(), Deferred()]
        lost: Deferred = Deferred()
        losses: list[NodeConnection] = []

        node = NodeConnection(
            name="fs-loop",
            endpoint=TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port),
            password="ClueCon",
            heartbeat_sec=20,
            event_names=EVENT_NAMES,
            clock=clock,
            on_event=lambda node, event: None,
            on_ready=lambda node: readies.pop(0).callback(node),
            on_lost=lambda node: losses.append(node) or (lost.called or lost.callback(node)),
            retry_policy=lambda attempt: 1.0,
        )
        first, second = readies
        node.startService()
        await first
        self.assertTrue(node.ready)
        self.assertEqual(await node.api("status"), "UP status")
        switch = server_factory.connections[0]
        self.assertEqual(switch.commands[:2], [b"auth ClueCon", SUBSCRIBE[:-2]])
        switch.transport.loseConnection()
        await lost
        self.assertFalse(node.ready)
        # on_lost runs inside connectionLost, before ClientService schedules
        # its retry: let that finish, then let the retry delay pass.
        await deferLater(reactor, 0, lambda: None)
        clock.advance(1.0)
        await second
        self.assertEqual(await node.api("version"), "UP version")
        await node.stopService()
        again = server_factory.connections[1]
        await again.closed
        self.assertEqual(again.commands[-1], b"exit")
        self.assertEqual(losses, [node, node])  # the drop, then our own stop

    def test_reconnects_over_loopback(self) -> Deferred:
        return Deferred.fromCoroutine(self._loopback_scenario())
