"""Test-side helpers for the simulator tests: a minimal ESL reader and a loopback harness.

The gateway's own ESL parser lives elsewhere; this reader is deliberately
small and strict (bytes only, Content-Length honoured, split lines before
URL-decoding).
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote_to_bytes

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from dialgw.observe import Observers
from dialgw.simulator.protocol import ESLServerFactory
from dialgw.simulator.server import FreeSwitchSimulator
from tests.esl_fixtures import fixtures_dir

FIXTURES = fixtures_dir()

UUID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@attrs.frozen
class Frame:
    """One server frame: envelope headers in order, body bytes, and the raw bytes."""

    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def get(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def content_type(self) -> str | None:
        return self.get("Content-Type")

    def event(self) -> ParsedEvent:
        """Decode a text/event-plain or text/event-json body."""
        if self.content_type == "text/event-json":
            pairs = json.loads(self.body.decode("utf-8"), object_pairs_hook=list)
            headers = [(k, v) for k, v in pairs if k != "_body"]
            body = next((v.encode() for k, v in pairs if k == "_body"), None)
            return ParsedEvent(headers, body)
        assert self.content_type == "text/event-plain", self.content_type
        head, sep, rest = self.body.partition(b"\n\n")
        headers = []
        for line in head.split(b"\n"):
            key, _, value = line.partition(b": ")
            headers.append((key.decode(), unquote_to_bytes(value).decode("utf-8", "replace")))
        body = None
        length = dict(headers).get("Content-Length")
        if length is not None:
            body = rest[: int(length)]
            headers = [(k, v) for k, v in headers if k != "Content-Length"]
        return ParsedEvent(headers, body)


@attrs.frozen
class ParsedEvent:
    headers: list[tuple[str, str]]
    body: bytes | None

    def get(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @property
    def name(self) -> str:
        return self.get("Event-Name") or ""


def parse_frames(data: bytes) -> tuple[list[Frame], bytes]:
    """Every complete frame in ``data`` and the incomplete rest."""
    frames = []
    position = 0
    while True:
        end = data.find(b"\n\n", position)
        if end < 0:
            break
        block = data[position:end].decode("utf-8")
        headers = [tuple(line.split(": ", 1)) for line in block.split("\n")]
        length = int(dict(headers).get("Content-Length", 0))
        if end + 2 + length > len(data):
            break
        body = data[end + 2 : end + 2 + length]
        frames.append(Frame(headers, body, data[position : end + 2 + length]))  # type: ignore[arg-type]
        position = end + 2 + length
    return frames, data[position:]


class ESLTestClient(Protocol):
    """Collects server frames; tests await them in order."""

    def __init__(self) -> None:
        self.raw = bytearray()
        self._pending = b""
        self.frames: list[Frame] = []
        self.cursor = 0
        self._arrivals: Observers[None] = Observers()
        self.lost: Deferred[None] = Deferred()
        self.closed = False

    def dataReceived(self, data: bytes) -> None:
        self.raw += data
        frames, self._pending = parse_frames(self._pending + data)
        self.frames += frames
        self._wake()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        self._wake()
        self.lost.callback(None)

    def _wake(self) -> None:
        self._arrivals.fire(None)

    def send(self, text: str | bytes) -> None:
        self.transport.write(text.encode() if isinstance(text, str) else text)

    async def _more(self) -> None:
        if self.closed:
            raise AssertionError(f"connection closed; frames so far: {[f.raw[:60] for f in self.frames]}")
        await self._arrivals.when()

    async def frame(self) -> Frame:
        """The next frame not yet consumed."""
        while self.cursor >= len(self.frames):
            await self._more()
        frame = self.frames[self.cursor]
        self.cursor += 1
        return frame

    async def reply(self) -> Frame:
        """The next command/reply or api/response, skipping events."""
        while True:
            frame = await self.frame()
            if frame.content_type in ("command/reply", "api/response", "text/disconnect-notice"):
                return frame

    async def command(self, line: str) -> Frame:
        """Send one command and return its reply."""
        self.send(line + "\n\n")
        return await self.reply()

    async def events_until(self, name: str, unique_id: str | None = None) -> list[ParsedEvent]:
        """Events (consumed) up to and including the first one named ``name``."""
        events = []
        while True:
            frame = await self.frame()
            if not frame.content_type or not frame.content_type.startswith("text/event"):
                continue
            event = frame.event()
            events.append(event)
            if event.name == name and (unique_id is None or event.get("Unique-ID") == unique_id):
                return events

    async def settle(self, seconds: float = 0.05) -> None:
        """Let the real reactor move bytes for a moment."""
        await deferLater(reactor, seconds, lambda: None)

    def remaining_events(self) -> list[ParsedEvent]:
        """Events received but not yet consumed (after :meth:`settle`)."""
        events = [f.event() for f in self.frames[self.cursor :] if (f.content_type or "").startswith("text/event")]
        self.cursor = len(self.frames)
        return events


class SimulatorTestCase(TestCase):
    """A simulator on a Clock, listening on 127.0.0.1, and clients connected to it over loopback."""

    timeout = 15
    simulator_options: dict[str, object] = {}

    async def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_795_703_214)  # a plausible epoch, as in the captures
        self.simulator = FreeSwitchSimulator(clock=self.clock, **self.simulator_options)  # type: ignore[arg-type]
        self.simulator.startService()
        self.addCleanup(self.simulator.stopService)
        endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        self.port = await endpoint.listen(ESLServerFactory(self.simulator))
        self.addCleanup(self.port.stopListening)

    async def connect(self, auth: bool = True, events: str | None = None) -> ESLTestClient:
        """A connected client, greeted, optionally authenticated and subscribed."""
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        client = await endpoint.connect(Factory.forProtocol(ESLTestClient))
        self.addCleanup(self._close, client)
        greeting = await client.frame()
        assert greeting.raw == b"Content-Type: auth/request\n\n", greeting.raw
        if auth:
            reply = await client.command("auth ClueCon")
            assert reply.get("Reply-Text") == "+OK accepted", reply.headers
        if events:
            reply = await client.command(f"event {events}")
            assert (reply.get("Reply-Text") or "").startswith("+OK event listener enabled"), reply.headers
        return client

    async def _close(self, client: ESLTestClient) -> None:
        if not client.closed:
            client.transport.abortConnection()
            await client.lost

    async def advance(self, *steps: float) -> None:
        """Move the simulator's clock step by step, letting bytes flow between steps."""
        for step in steps:
            self.clock.advance(step)
            await self.settle()

    async def settle(self, seconds: float = 0.02) -> None:
        await deferLater(reactor, seconds, lambda: None)

    async def run_clock(self, seconds: float, step: float = 0.1) -> None:
        """Run the simulator's clock in small steps, then let the bytes arrive."""
        for _ in range(int(seconds / step)):
            self.clock.advance(step)
        await self.settle(0.1)

    async def originate(
        self,
        client: ESLTestClient,
        number: str,
        variables: str = "",
        uuid: str | None = None,
        job: str = "11111111-2222-4333-8444-555555555555",
    ) -> str:
        """``bgapi originate`` with our own Job-UUID; returns the channel UUID."""
        import uuid as uuidlib

        call_uuid = uuid or str(uuidlib.uuid4())
        extra = f",{variables}" if variables else ""
        reply = await client.command(
            f"bgapi originate {{origination_uuid={call_uuid},origination_caller_id_number=0721234567{extra}}}"
            f"sofia/gateway/trunk/{number} &park()\nJob-UUID: {job}"
        )
        assert reply.get("Reply-Text") == f"+OK Job-UUID: {job}", reply.headers
        assert reply.get("Job-UUID") == job, reply.headers
        return call_uuid


def names(events: list[ParsedEvent]) -> list[str]:
    """Event names, CHANNEL_STATE and CHANNEL_CALLSTATE annotated with their state."""
    out = []
    for event in events:
        if event.name == "CHANNEL_STATE":
            out.append(f"STATE:{event.get('Channel-State')}")
        elif event.name == "CHANNEL_CALLSTATE":
            out.append(f"CALLSTATE:{event.get('Channel-Call-State')}")
        else:
            out.append(event.name)
    return out
