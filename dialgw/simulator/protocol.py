"""One inbound Event Socket connection, served as mod_event_socket's listener thread serves it.

:class:`ESLServerProtocol` authenticates, reads commands and runs them one
at a time, keeps the connection's event subscriptions and filters, and
writes replies and events byte for byte as FreeSWITCH does. What it runs
it asks of the switch through :class:`Core`.
"""

from __future__ import annotations

import re
import typing
import uuid as uuidlib
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar, cast

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime, ITCPTransport
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from dialgw.simulator import wire
from dialgw.simulator.events import EVENT_NAMES, event_name
from dialgw.simulator.wire import Command, Event

log = Logger()

_T = TypeVar("_T")

# read_packet(listener, &event, 25): an unauthenticated connection waits this long per command.
AUTH_TIMEOUT = 25.0


class Core(typing.Protocol):
    """What a connection needs of the switch it serves."""

    clock: IReactorTime
    password: str
    connections: list[ESLServerProtocol]

    @property
    def is_down(self) -> bool:
        """The switch is shut down: connections are refused."""

    @property
    def silent(self) -> bool:
        """The switch is hung: nothing is written, commands wait."""

    def record(self, data: bytes) -> None:
        """Note bytes received."""

    def record_command(self, line: str) -> None:
        """Note the first line of a command received."""

    def atomically(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run one step of the switch."""

    def soon(self, work: Callable[[], object]) -> None:
        """Run ``work`` once the current step of the switch has finished."""

    def execute_api(self, name: str, arg: str, deliver: Callable[[str], None]) -> None:
        """Run an API command; ``deliver(output)`` when it has its output."""

    def background_job(self, job_uuid: str, command: str, arg: str, output: str) -> None:
        """Fire the BACKGROUND_JOB carrying a bgapi command's output."""


class ESLServerProtocol(Protocol):
    """One inbound Event Socket connection, as mod_event_socket's listener thread serves it.

    Commands are executed one at a time in arrival order; events fired while
    a command executes (or while ``api originate`` blocks the connection) are
    held and written after its reply.
    """

    def __init__(self, core: Core) -> None:
        self.core = core
        self.authed = False
        self.format = "plain"
        self.listening = False
        self.subscribed: set[str] = set()
        self.filters: list[tuple[str, str]] = []
        self._reader = wire.CommandReader()
        self._commands: deque[Command] = deque()
        self._executing = False
        self._blocked = False
        self._held_events: list[Event] = []
        self._silenced: list[bytes] = []
        self._close_when_resumed = False
        self._closing = False
        self._gone = False
        self._auth_timer: IDelayedCall | None = None

    # connection life
    def connectionMade(self) -> None:
        """Greet, unless the switch is down."""
        if self.core.is_down:
            self._gone = True
            self._tcp().abortConnection()
            return
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.core.connections.append(self)
        self._write(wire.auth_request())
        self._wait_for_auth()

    def _wait_for_auth(self) -> None:
        self._stop_auth_timer()
        if not self.authed:
            self._auth_timer = self.core.clock.callLater(AUTH_TIMEOUT, self._auth_timed_out)

    def stop_timers(self) -> None:
        """Cancel this connection's timers (the auth timeout)."""
        self._stop_auth_timer()

    def _stop_auth_timer(self) -> None:
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None

    def _auth_timed_out(self) -> None:
        self._auth_timer = None
        if self.core.silent:
            self._wait_for_auth()  # a hung switch times nothing out
        elif not self.authed:
            self.disconnect()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Forget this connection; its calls go on."""
        self._gone = True
        self._stop_auth_timer()
        if self in self.core.connections:
            self.core.connections.remove(self)

    def dataReceived(self, data: bytes) -> None:
        """Record every byte, frame commands, run them in order."""
        self.core.record(data)
        for command in self._reader.feed(data):
            self.core.record_command(command.line)
            self._commands.append(command)
            if not self.authed and not self._closing:
                self._wait_for_auth()
        self._process()

    def abort(self) -> None:
        """Close the socket at once, writing nothing."""
        self._gone = True
        self._stop_auth_timer()
        self._closing = True
        self._tcp().abortConnection()

    # output
    def _tcp(self) -> ITCPTransport:
        assert self.transport is not None, "not connected"
        return cast(ITCPTransport, self.transport)

    def _write(self, data: bytes) -> None:
        if self._gone:
            return
        if self.core.silent:
            self._silenced.append(data)
            return
        self._tcp().write(data)

    def resume(self) -> None:
        """The switch is answering again: write what was held, run what was queued."""
        held, self._silenced = self._silenced, []
        for data in held:
            self._write(data)
        if self._close_when_resumed:
            self._close_when_resumed = False
            self._close()
            return
        self._process()

    def _close(self) -> None:
        if self.core.silent:
            self._close_when_resumed = True
            return
        self._tcp().loseConnection()

    def disconnect(self, text: str = wire.GOODBYE) -> None:
        """Send a disconnect notice and close; later commands are ignored."""
        if self._closing:
            return
        self._closing = True
        self._write(wire.disconnect_notice(text))
        self._close()

    def offer(self, event: Event) -> None:
        """Queue or write an event if this connection is subscribed and its filters pass."""
        if self._closing or not self.wants(event):
            return
        if self._executing or self._blocked:
            self._held_events.append(event)
        else:
            self._write(wire.event_frame(event, self.format))

    def _flush_held(self) -> None:
        held, self._held_events = self._held_events, []
        for event in held:
            if not self._closing:
                self._write(wire.event_frame(event, self.format))

    def wants(self, event: Event) -> bool:
        """Subscription and filters, as ``event_handler`` applies them (filters OR-ed)."""
        if not self.listening or event.name not in self.subscribed:
            return False
        if not self.filters:
            return True
        send = False
        for header, raw in self.filters:
            value = event.get(header)
            if value is None:
                continue
            compare = raw
            positive = True
            while compare and compare[0] in "+- ":
                if compare[0] == "+":
                    positive = True
                elif compare[0] == "-":
                    positive = False
                compare = compare[1:]
            if send and positive:
                continue
            if raw.startswith("/"):
                matched = _regex_match(value, compare)
            else:
                matched = value.lower() == compare.lower()
            if matched:
                if not positive:
                    return False
                send = True
        return send

    # command loop
    def _process(self) -> None:
        while self._commands and not (self._blocked or self._closing or self.core.silent):
            command = self._commands.popleft()
            self._executing = True
            try:
                self.core.atomically(self._execute, command)
            except Exception:
                log.failure("simulator command {line!r} failed", line=command.line)
                self._reply("-ERR command failed")
            finally:
                self._executing = False
            if not self._blocked:
                self._flush_held()

    def _reply(self, text: str, extra: list[tuple[str, str]] | None = None) -> None:
        self._write(wire.command_reply(text, extra))

    def _execute(self, command: Command) -> None:
        line = command.line
        lower = line.lower()
        if lower.startswith("exit") or line.startswith("..."):
            self._reply("+OK bye")
            self.disconnect()
            return
        if not self.authed:
            if lower.startswith("auth "):
                if line[5:] == self.core.password:
                    self.authed = True
                    self._stop_auth_timer()
                    self._reply("+OK accepted")
                else:
                    self._reply("-ERR invalid")
                    self.disconnect()
                return
            self._reply("-ERR command not found")
            return
        if lower.startswith("event"):
            self._event(line)
        elif lower.startswith("nixevent"):
            self._nixevent(line)
        elif lower.startswith("noevents"):
            self._noevents()
        elif lower.startswith("filter "):
            self._filter(line[7:])
        elif lower.startswith("api "):
            self._api(line[4:])
        elif lower.startswith("bgapi "):
            self._bgapi(line[6:], command.header("Job-UUID"))
        elif lower.startswith("linger") or lower.startswith("nolinger"):
            self._reply("-ERR not controlling a session")
        else:
            self._reply("-ERR command not found")

    @staticmethod
    def _tokens(line: str, skip: int) -> list[str] | None:
        rest = line[skip:]
        if " " not in rest:
            return None
        return rest[rest.index(" ") + 1 :].split(" ")

    def _event(self, line: str) -> None:
        keys = 0
        custom = False
        for index, token in enumerate(self._tokens(line, 5) or []):
            if index == 0 and token.lower() in ("plain", "json", "xml"):
                self.format = token.lower()
                continue
            if custom:
                continue  # CUSTOM subclasses: the simulator fires none
            name = event_name(token)
            if name is None:
                continue
            keys += 1
            if name == "ALL":
                self.subscribed |= EVENT_NAMES
            self.subscribed.add(name)
            custom = custom or name == "CUSTOM"
        if not keys:
            self._reply("-ERR no keywords supplied")
            return
        self.listening = True
        self._reply(f"+OK event listener enabled {self.format}")

    def _nixevent(self, line: str) -> None:
        keys = 0
        custom = False
        for token in self._tokens(line, 8) or []:
            if custom:
                continue
            name = event_name(token)
            if name is None:
                continue
            keys += 1
            if name == "CUSTOM":
                custom = True
            elif name == "ALL":
                self.subscribed.clear()
            else:
                self.subscribed.discard(name)
                self.subscribed.discard("ALL")
        if not keys:
            self._reply("-ERR no keywords supplied")
            return
        self.listening = True
        self._reply("+OK events nixed")

    def _noevents(self) -> None:
        if not self.listening:
            self._reply("-ERR not listening for events")
            return
        self.listening = False
        self.subscribed.clear()
        self._held_events.clear()
        self._reply("+OK no longer listening for events")

    def _filter(self, rest: str) -> None:
        header, _, value = rest.partition(" ")
        has_value = " " in rest
        if header.lower() == "delete" and has_value:
            header, _, value = value.partition(" ")
            has_value = " " in rest[7:]
            if header.lower() == "all":
                self.filters.clear()
            elif has_value:
                self.filters = [
                    (h, v) for h, v in self.filters if not (h.lower() == header.lower() and v == value)
                ]
            else:
                self.filters = [(h, v) for h, v in self.filters if h.lower() != header.lower()]
            self._reply(f"+OK filter deleted. [{header}][{value if has_value else ''}]")
            return
        if not has_value:
            self._reply("-ERR invalid syntax")
            return
        if header.lower() == "add":
            header, _, value = value.partition(" ")
        self.filters.append((header, value))
        self._reply(f"+OK filter added. [{header}]=[{value}]")

    def _api(self, text: str) -> None:
        name, _, arg = text.partition(" ")
        waiting = False
        done = False

        def deliver(output: str) -> None:
            nonlocal done
            done = True
            if self._gone:
                return
            self._write(wire.api_response(output))
            if waiting:
                self._blocked = False
                self._flush_held()
                # Later commands run once the switch's call code that finished the
                # originate has returned, never inside it.
                self.core.soon(self._process)

        self.core.execute_api(name, arg, deliver)
        if not done:
            waiting = True
            self._blocked = True

    def _bgapi(self, text: str, job_uuid: str | None) -> None:
        name, _, arg = text.partition(" ")
        job = (job_uuid or str(uuidlib.uuid4()))[:36]
        self._reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)])
        self.core.execute_api(name, arg, partial(self.core.background_job, job, name, arg))


def _regex_match(value: str, pattern: str) -> bool:
    """``/pattern/flags`` as FreeSWITCH's filter regexes are written."""
    body = pattern
    flags = 0
    if body.startswith("/"):
        end = body.rfind("/")
        if end > 0:
            if "i" in body[end + 1 :]:
                flags = re.IGNORECASE
            body = body[1:end]
        else:
            body = body[1:]
    try:
        return re.search(body, value, flags) is not None
    except re.error:
        return False


class ESLServerFactory(ServerFactory[ESLServerProtocol]):
    """Builds one :class:`ESLServerProtocol` per connection to ``core``."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def buildProtocol(self, addr: IAddress | None) -> ESLServerProtocol:
        """A connection served by the core."""
        protocol = ESLServerProtocol(self.core)
        protocol.factory = self
        return protocol
