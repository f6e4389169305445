"""A FreeSWITCH Event Socket server that plays scripted calls.

:class:`FreeSwitchSimulator` is the switch (calls, event sequence, capacity,
heartbeats); :class:`ESLServerProtocol` is one inbound ESL connection, which
reads commands and writes replies and events exactly as mod_event_socket
does. Everything runs on the clock passed in, so tests drive time with
``twisted.internet.task.Clock``.
"""

from __future__ import annotations

import json
import re
import time
import uuid as uuidlib
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, ServerFactory, connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from dialgw.simulator import wire
from dialgw.simulator.causes import q850, str2cause
from dialgw.simulator.dialstring import ORIGINATE_USAGE, Originate, UsageError, parse_originate, separate
from dialgw.simulator.scenarios import Scenario, scenario_for
from dialgw.simulator.wire import Command, Event

log = Logger()

# read_packet(listener, &event, 25): an unauthenticated connection waits this long per command.
AUTH_TIMEOUT = 25.0

VERSION = "1.11.3-dev~64bit"

# switch_event.c EVENT_NAMES: what `event` accepts (anything else is ignored).
EVENT_NAMES = frozenset(
    """CUSTOM CLONE CHANNEL_CREATE CHANNEL_DESTROY CHANNEL_STATE CHANNEL_CALLSTATE
    CHANNEL_ANSWER CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CHANNEL_EXECUTE
    CHANNEL_EXECUTE_COMPLETE CHANNEL_HOLD CHANNEL_UNHOLD CHANNEL_BRIDGE CHANNEL_UNBRIDGE
    CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA CHANNEL_OUTGOING CHANNEL_PARK CHANNEL_UNPARK
    CHANNEL_APPLICATION CHANNEL_ORIGINATE CHANNEL_UUID API LOG INBOUND_CHAN OUTBOUND_CHAN
    STARTUP SHUTDOWN PUBLISH UNPUBLISH TALK NOTALK SESSION_CRASH MODULE_LOAD MODULE_UNLOAD
    DTMF MESSAGE PRESENCE_IN NOTIFY_IN PRESENCE_OUT PRESENCE_PROBE MESSAGE_WAITING
    MESSAGE_QUERY ROSTER CODEC BACKGROUND_JOB DETECTED_SPEECH DETECTED_TONE
    PRIVATE_COMMAND HEARTBEAT TRAP ADD_SCHEDULE DEL_SCHEDULE EXE_SCHEDULE RE_SCHEDULE
    RELOADXML NOTIFY PHONE_FEATURE PHONE_FEATURE_SUBSCRIBE SEND_MESSAGE RECV_MESSAGE
    REQUEST_PARAMS CHANNEL_DATA GENERAL COMMAND SESSION_HEARTBEAT CLIENT_DISCONNECTED
    SERVER_DISCONNECTED SEND_INFO RECV_INFO RECV_RTCP_MESSAGE SEND_RTCP_MESSAGE
    CALL_SECURE NAT RECORD_START RECORD_STOP PLAYBACK_START PLAYBACK_STOP CALL_UPDATE
    FAILURE SOCKET_DATA MEDIA_BUG_START MEDIA_BUG_STOP CONFERENCE_DATA_QUERY
    CONFERENCE_DATA CALL_SETUP_REQ CALL_SETUP_RESULT CALL_DETAIL DEVICE_STATE TEXT
    SHUTDOWN_REQUESTED ALL""".split()
)

# switch_channel_event_set_extended_data: only these carry variable_* headers.
VARIABLE_EVENTS = frozenset(
    """CHANNEL_CREATE CHANNEL_ORIGINATE CHANNEL_UUID CHANNEL_ANSWER CHANNEL_PARK
    CHANNEL_UNPARK CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA
    CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CHANNEL_DATA CHANNEL_EXECUTE
    CHANNEL_EXECUTE_COMPLETE CHANNEL_DESTROY CHANNEL_HOLD CHANNEL_UNHOLD CALL_UPDATE""".split()
)

# Where FreeSWITCH fires each event from (Event-Calling-File/-Function/-Line-Number).
_CALLING: dict[str, tuple[str, str, int]] = {
    "CHANNEL_OUTGOING": ("switch_core_session.c", "switch_core_session_outgoing_channel", 768),
    "CHANNEL_STATE": ("switch_channel.c", "switch_channel_perform_set_running_state", 2409),
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", 626),
    "CHANNEL_ORIGINATE": ("switch_core_state_machine.c", "switch_core_session_run", 632),
    "CHANNEL_PROGRESS": ("switch_channel.c", "switch_channel_perform_mark_ring_ready_value", 3507),
    "CHANNEL_PROGRESS_MEDIA": ("switch_channel.c", "switch_channel_perform_mark_pre_answered", 3562),
    "CHANNEL_CALLSTATE": ("switch_channel.c", "switch_channel_perform_set_callstate", 302),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", 3848),
    "CALL_UPDATE": ("switch_channel.c", "switch_channel_flip_cid", 3279),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", 2949),
    "CHANNEL_EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", 2972),
    "CHANNEL_PARK": ("switch_ivr.c", "switch_ivr_park", 1002),
    "CHANNEL_UNPARK": ("switch_ivr.c", "switch_ivr_park", 1213),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", 3447),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c", "switch_core_session_reporting_state", 943),
    "CHANNEL_DESTROY": ("switch_core_session.c", "switch_core_session_perform_destroy", 1588),
    "API": ("switch_loadable_module.c", "switch_api_execute", 3140),
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", 1580),
    "HEARTBEAT": ("switch_core.c", "send_heartbeat", 95),
    "RE_SCHEDULE": ("switch_scheduler.c", "switch_scheduler_execute", 73),
    "SHUTDOWN": ("switch_core.c", "switch_core_destroy", 3033),
}

CHANNEL_STATES = {
    name: number
    for number, name in enumerate(
        "CS_NEW CS_INIT CS_ROUTING CS_SOFT_EXECUTE CS_EXECUTE CS_EXCHANGE_MEDIA CS_PARK "
        "CS_CONSUME_MEDIA CS_HIBERNATE CS_RESET CS_HANGUP CS_REPORTING CS_DESTROY CS_NONE".split()
    )
}
CALL_STATES = {
    name: number
    for number, name in enumerate("DOWN DIALING RINGING EARLY ACTIVE HELD RING_WAIT HANGUP UNHELD".split())
}

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_SHOW_COLUMNS = (
    "uuid direction created created_epoch name state cid_name cid_num ip_addr dest application "
    "application_data dialplan context read_codec read_rate read_bit_rate write_codec write_rate "
    "write_bit_rate secure hostname presence_id presence_data accountcode callstate callee_name "
    "callee_num callee_direction call_uuid sent_callee_name sent_callee_num initial_cid_name "
    "initial_cid_num initial_ip_addr initial_dest initial_dialplan initial_context"
).split()


def _stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def _gmt(seconds: float) -> str:
    t = time.gmtime(seconds)
    return f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"


def _usec(seconds: float | None) -> str:
    return "0" if seconds is None else str(int(seconds * 1_000_000))


def _uptime_text(seconds: float) -> str:
    usec_total = int(seconds * 1_000_000)
    usec = usec_total % 1000
    msec = (usec_total // 1000) % 1000
    whole = usec_total // 1_000_000
    years, rest = divmod(whole, 365 * 86400)
    days, rest = divmod(rest, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (
        f"{years} years, {days} days, {hours} hours, {minutes} minutes, "
        f"{secs} seconds, {msec} milliseconds, {usec} microseconds"
    )


@attrs.define(eq=False)
class SimCall:
    """One live outbound channel of the simulated switch."""

    uuid: str
    destination: str
    channel_name: str
    variables: dict[str, str]
    scenario: Scenario
    created_at: float
    caller_id_number: str
    caller_id_name: str | None = None
    ignore_early_media: bool = False
    state: str = "ringing"  # ringing / early / answered / hangup
    answered_at: float | None = None
    progress_at: float | None = None
    progress_media_at: float | None = None
    hangup_at: float | None = None
    hangup_cause: str | None = None
    running_state: str = "CS_NEW"
    state_number: int = 0
    call_state: str = "DOWN"
    parked: bool = False
    media: bool = False
    flipped: bool = False
    remote_seen: bool = False
    hit_dialplan: bool = False
    park_uuid: str = ""
    job: Callable[[str], None] | None = None
    originate_timer: IDelayedCall | None = None
    timers: list[IDelayedCall] = attrs.field(factory=list)


class ESLServerProtocol(Protocol):
    """One inbound Event Socket connection, as mod_event_socket's listener thread serves it.

    Commands are executed one at a time in arrival order; events fired while
    a command executes (or while ``api originate`` blocks the connection) are
    held and written after its reply.
    """

    def __init__(self, simulator: FreeSwitchSimulator) -> None:
        self.simulator = simulator
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
        if self.simulator.is_down:
            self._gone = True
            self.transport.abortConnection()
            return
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.simulator.connections.append(self)
        self._write(wire.auth_request())
        self._wait_for_auth()

    def _wait_for_auth(self) -> None:
        self._stop_auth_timer()
        if not self.authed:
            self._auth_timer = self.simulator.clock.callLater(AUTH_TIMEOUT, self._auth_timed_out)

    def stop_timers(self) -> None:
        """Cancel this connection's timers (the auth timeout)."""
        self._stop_auth_timer()

    def _stop_auth_timer(self) -> None:
        if self._auth_timer is not None and self._auth_timer.active():
            self._auth_timer.cancel()
        self._auth_timer = None

    def _auth_timed_out(self) -> None:
        self._auth_timer = None
        if self.simulator.silent:
            self._wait_for_auth()  # a hung switch times nothing out
        elif not self.authed:
            self.disconnect()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Forget this connection; its calls go on."""
        self._gone = True
        self._stop_auth_timer()
        if self in self.simulator.connections:
            self.simulator.connections.remove(self)

    def dataReceived(self, data: bytes) -> None:
        """Record every byte, frame commands, run them in order."""
        self.simulator.received += data
        for command in self._reader.feed(data):
            self.simulator.commands.append(command.line)
            self._commands.append(command)
            if not self.authed and not self._closing:
                self._wait_for_auth()
        self._process()

    def abort(self) -> None:
        """Close the socket at once, writing nothing."""
        self._gone = True
        self._stop_auth_timer()
        self._closing = True
        self.transport.abortConnection()

    # output
    def _write(self, data: bytes) -> None:
        if self._gone:
            return
        if self.simulator.silent:
            self._silenced.append(data)
            return
        self.transport.write(data)

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
        if self.simulator.silent:
            self._close_when_resumed = True
            return
        self.transport.loseConnection()

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
        while self._commands and not (self._blocked or self._closing or self.simulator.silent):
            command = self._commands.popleft()
            self._executing = True
            try:
                self.simulator.atomically(self._execute, command)
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
                if line[5:] == self.simulator.password:
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
            name = _event_name(token)
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
            name = _event_name(token)
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
                self.simulator.soon(self._process)

        self.simulator.execute_api(name, arg, deliver)
        if not done:
            waiting = True
            self._blocked = True

    def _bgapi(self, text: str, job_uuid: str | None) -> None:
        name, _, arg = text.partition(" ")
        job = (job_uuid or str(uuidlib.uuid4()))[:36]
        self._reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)])
        self.simulator.execute_api(name, arg, partial(self.simulator.background_job, job, name, arg))


def _event_name(token: str) -> str | None:
    upper = token.upper()
    if upper.startswith("SWITCH_EVENT_"):
        upper = upper[len("SWITCH_EVENT_") :]
    return upper if upper in EVENT_NAMES else None


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


class FreeSwitchSimulator:
    """The simulated switch: its calls, events, capacity and heartbeats, independent of connections."""

    def __init__(
        self,
        clock: IReactorTime,
        password: str = "ClueCon",
        heartbeat_sec: float = 20,
        max_sessions: int = 1000,
        sessions_per_second: int = 30,
        hostname: str = "sim",
    ) -> None:
        self.clock = clock
        self.password = password
        self.heartbeat_sec = heartbeat_sec
        self.max_sessions = max_sessions
        self.sessions_per_second = sessions_per_second
        self.hostname = hostname
        self.calls: dict[str, SimCall] = {}
        self.connections: list[ESLServerProtocol] = []
        self.received = bytearray()
        self.commands: list[str] = []
        self.core_uuid = str(uuidlib.uuid4())
        self.is_down = False
        self._silent = False
        self._depth = 0
        self._after: deque[Callable[[], object]] = deque()
        self._reset_counters()
        self._heartbeat = LoopingCall(self.atomically, self._send_heartbeat)
        self._heartbeat.clock = clock
        self.start()

    def _reset_counters(self) -> None:
        self.started_at = self.clock.seconds()
        self._sequence = 0
        self._session_id = 0
        self._sps_second = -1
        self._sps_count = 0
        self._sps_last = 0
        self._sps_peak = 0
        self._session_peak = 0

    def atomically(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run one step of the switch; work queued with :meth:`soon` meanwhile runs after it."""
        self._depth += 1
        try:
            return function(*args)
        finally:
            self._depth -= 1
            if not self._depth:
                while self._after:
                    self.atomically(self._after.popleft())

    def soon(self, work: Callable[[], object]) -> None:
        """Run ``work`` now, or as soon as the current step of the switch has finished."""
        if self._depth:
            self._after.append(work)
        else:
            self.atomically(work)

    # public control
    def factory(self) -> ServerFactory:
        """A factory building one :class:`ESLServerProtocol` per ESL connection."""
        return ServerFactory.forProtocol(partial(ESLServerProtocol, self))

    @property
    def silent(self) -> bool:
        """While set, nothing is written to any socket (a hung switch); clearing it resumes.

        Output produced meanwhile (replies, call events) is held and written on
        resume; commands that arrive are recorded but run only on resume; no
        heartbeats are produced while silent.
        """
        return self._silent

    @silent.setter
    def silent(self, value: bool) -> None:
        was, self._silent = self._silent, bool(value)
        if was and not self._silent:
            for connection in list(self.connections):
                connection.resume()

    def start(self) -> None:
        """Start the HEARTBEAT loop (it starts with the simulator; this is idempotent)."""
        if not self._heartbeat.running and self.heartbeat_sec > 0:
            self._heartbeat.start(self.heartbeat_sec, now=False)

    def stop(self) -> None:
        """Stop heartbeats and every call timer (for test clean-up and service stop)."""
        if self._heartbeat.running:
            self._heartbeat.stop()
        for call in self.calls.values():
            self._cancel_timers(call)
        for connection in self.connections:
            connection.stop_timers()

    def drop_connections(self) -> None:
        """Close every ESL socket abruptly; calls go on, their events meanwhile are lost."""
        for connection in list(self.connections):
            connection.abort()
            if connection in self.connections:
                self.connections.remove(connection)

    def restart(self) -> None:
        """Like a FreeSWITCH restart: connections dropped, calls forgotten silently, new Core-UUID."""
        self.drop_connections()
        for call in self.calls.values():
            self._cancel_timers(call)
        self.calls.clear()
        self.core_uuid = str(uuidlib.uuid4())
        self.is_down = False
        self._reset_counters()
        self.start()

    def shutdown(self) -> None:
        """SHUTDOWN event, every call hung up with SYSTEM_SHUTDOWN, then the shutdown notice and close."""
        self.atomically(self._shutdown)

    def _shutdown(self) -> None:
        self._fire(self._event("SHUTDOWN", [("Event-Info", "System Shutting Down")]))
        for call in list(self.calls.values()):
            self._hangup(call, "SYSTEM_SHUTDOWN", "send_bye" if call.answered_at else "send_cancel")
        for connection in list(self.connections):
            connection.disconnect(wire.SHUTTING_DOWN)
        self.is_down = True
        if self._heartbeat.running:
            self._heartbeat.stop()

    def hangup(self, uuid: str, cause: str = "NORMAL_CLEARING") -> bool:
        """The far end hangs up (a BYE, or a refusal while ringing); False if no such call."""
        return bool(self.atomically(self._remote_hangup, uuid, cause))

    def _remote_hangup(self, uuid: str, cause: str) -> bool:
        call = self.calls.get(uuid)
        if call is None or call.hangup_cause:
            return False
        if call.answered_at is not None:
            self._hangup(call, cause, "recv_bye", 200)
        else:
            self._hangup(call, cause, "recv_refuse")
        return True

    # events
    def _event(self, name: str, headers: list[tuple[str, str]] | None = None, body: str | None = None) -> Event:
        now = self.clock.seconds()
        self._sequence += 1
        source, function, line = _CALLING.get(name, ("mod_event_socket.c", "simulator", 0))
        standard = [
            ("Event-Name", name),
            ("Core-UUID", self.core_uuid),
            ("FreeSWITCH-Hostname", self.hostname),
            ("FreeSWITCH-Switchname", self.hostname),
            ("FreeSWITCH-IPv4", "127.0.0.1"),
            ("FreeSWITCH-IPv6", "::1"),
            ("Event-Date-Local", _stamp(now)),
            ("Event-Date-GMT", _gmt(now)),
            ("Event-Date-Timestamp", _usec(now)),
            ("Event-Calling-File", source),
            ("Event-Calling-Function", function),
            ("Event-Calling-Line-Number", str(line)),
            ("Event-Sequence", str(self._sequence)),
        ]
        return Event(standard + list(headers or []), body)

    def _fire(self, event: Event) -> None:
        for connection in list(self.connections):
            connection.offer(event)

    def _channel_event(
        self,
        call: SimCall,
        name: str,
        before: list[tuple[str, str]] | None = None,
        after: list[tuple[str, str]] | None = None,
    ) -> None:
        headers = list(before or [])
        if call.hangup_cause or call.state_number >= CHANNEL_STATES["CS_HANGUP"]:
            answer_state = "hangup"
        elif call.answered_at is not None:
            answer_state = "answered"
        elif call.progress_media_at is not None:
            answer_state = "early"
        else:
            answer_state = "ringing"
        headers += [
            ("Channel-State", call.running_state),
            ("Channel-Call-State", call.call_state),
            ("Channel-State-Number", str(call.state_number)),
            ("Channel-Name", call.channel_name),
            ("Unique-ID", call.uuid),
            ("Call-Direction", "outbound"),
            ("Presence-Call-Direction", "outbound"),
            ("Channel-HIT-Dialplan", "true" if call.hit_dialplan else "false"),
            ("Channel-Call-UUID", call.uuid),
            ("Answer-State", answer_state),
        ]
        if call.hangup_cause:
            headers.append(("Hangup-Cause", call.hangup_cause))
        if call.media:
            headers += [
                ("Channel-Read-Codec-Name", "PCMU"),
                ("Channel-Read-Codec-Rate", "8000"),
                ("Channel-Read-Codec-Bit-Rate", "64000"),
                ("Channel-Write-Codec-Name", "PCMU"),
                ("Channel-Write-Codec-Rate", "8000"),
                ("Channel-Write-Codec-Bit-Rate", "64000"),
            ]
        headers += self._caller_profile(call)
        headers += after or []
        if name in VARIABLE_EVENTS:
            headers += [(f"variable_{key}", value) for key, value in call.variables.items()]
        self._fire(self._event(name, headers))

    def _caller_profile(self, call: SimCall) -> list[tuple[str, str]]:
        if call.flipped:
            cid_name: str | None = call.destination
            cid_num = call.destination
            callee_name: str | None = None
            callee_num = call.caller_id_number
        else:
            cid_name, cid_num = call.caller_id_name, call.caller_id_number
            ringing = call.progress_at is not None or call.progress_media_at is not None
            callee_name = call.destination if ringing else "Outbound Call"
            callee_num = call.destination
        profile = [("Caller-Direction", "outbound"), ("Caller-Logical-Direction", "outbound")]
        if cid_name:
            profile.append(("Caller-Caller-ID-Name", cid_name))
        profile += [
            ("Caller-Caller-ID-Number", cid_num),
            ("Caller-Orig-Caller-ID-Number", call.caller_id_number),
        ]
        if callee_name:
            profile.append(("Caller-Callee-ID-Name", callee_name))
        profile.append(("Caller-Callee-ID-Number", callee_num))
        if call.remote_seen:
            profile.append(("Caller-Network-Addr", "127.0.0.1"))
        hung = call.hangup_at if call.running_state in ("CS_HANGUP", "CS_REPORTING", "CS_DESTROY") else None
        profile += [
            ("Caller-ANI", call.caller_id_number),
            ("Caller-Destination-Number", call.destination),
            ("Caller-Unique-ID", call.uuid),
            ("Caller-Source", "src/switch_ivr_originate.c"),
            ("Caller-Context", "default"),
            ("Caller-Channel-Name", call.channel_name),
            ("Caller-Profile-Index", "1"),
            ("Caller-Profile-Created-Time", _usec(call.created_at)),
            ("Caller-Channel-Created-Time", _usec(call.created_at)),
            ("Caller-Channel-Answered-Time", _usec(call.answered_at)),
            ("Caller-Channel-Progress-Time", _usec(call.progress_at)),
            ("Caller-Channel-Progress-Media-Time", _usec(call.progress_media_at)),
            ("Caller-Channel-Hangup-Time", _usec(hung)),
            ("Caller-Channel-Transfer-Time", "0"),
            ("Caller-Channel-Resurrect-Time", "0"),
            ("Caller-Channel-Bridged-Time", "0"),
            ("Caller-Channel-Last-Hold", "0"),
            ("Caller-Channel-Hold-Accum", "0"),
            ("Caller-Screen-Bit", "true"),
            ("Caller-Privacy-Hide-Name", "false"),
            ("Caller-Privacy-Hide-Number", "false"),
        ]
        return profile

    def _set_state(self, call: SimCall, running: str, number: int | None = None) -> None:
        call.running_state = running
        call.state_number = CHANNEL_STATES[running] if number is None else number
        self._channel_event(call, "CHANNEL_STATE")

    def _set_callstate(self, call: SimCall, new: str) -> None:
        old, call.call_state = call.call_state, new
        self._channel_event(
            call,
            "CHANNEL_CALLSTATE",
            before=[("Original-Channel-Call-State", old), ("Channel-Call-State-Number", str(CALL_STATES[new]))],
        )

    def _send_heartbeat(self) -> None:
        if self._silent or self.is_down:
            return
        now = self.clock.seconds()
        self._roll_sps(now)
        up = now - self.started_at
        headers = [
            ("Event-Info", "System Ready"),
            ("Up-Time", _uptime_text(up)),
            ("FreeSWITCH-Version", VERSION),
            ("Uptime-msec", str(int(up * 1000))),
            ("Session-Count", str(len(self.calls))),
            ("Max-Sessions", str(self.max_sessions)),
            ("Session-Per-Sec", str(max(self.sessions_per_second - self._sps_count, 0))),
            ("Session-Per-Sec-Last", str(self._sps_last)),
            ("Session-Per-Sec-Max", str(self._sps_peak)),
            ("Session-Per-Sec-FiveMin", str(self._sps_peak)),
            ("Session-Since-Startup", str(self._session_id)),
            ("Session-Peak-Max", str(self._session_peak)),
            ("Session-Peak-FiveMin", str(self._session_peak)),
            ("Idle-CPU", "98.466667"),
        ]
        self._fire(self._event("HEARTBEAT", headers))
        self._fire(
            self._event(
                "RE_SCHEDULE",
                [
                    ("Task-ID", "1"),
                    ("Task-Desc", "heartbeat"),
                    ("Task-Group", "core"),
                    ("Task-Runtime", str(int(now + self.heartbeat_sec))),
                ],
            )
        )

    def background_job(self, job_uuid: str, command: str, arg: str, output: str) -> None:
        """Fire the BACKGROUND_JOB carrying a bgapi command's output."""
        headers = [("Job-UUID", job_uuid), ("Job-Command", command)]
        if arg:
            headers.append(("Job-Command-Arg", arg))
        self._fire(self._event("BACKGROUND_JOB", headers, body=output))

    # api commands
    def execute_api(self, name: str, arg: str, deliver: Callable[[str], None]) -> None:
        """Run an API command; ``deliver(output)`` now, or later for ``originate``."""
        lower = name.lower()
        handler = getattr(self, f"_api_{lower}", None) if name.isidentifier() else None
        if handler is None and lower != "originate":
            deliver(f"-ERR {name} Command not found!\n")
            return
        api_headers = [("API-Command", name)]
        if arg:
            api_headers.append(("API-Command-Argument", arg))
        api_event = self._event("API", api_headers)

        def finish(output: str) -> None:
            self._fire(api_event)
            deliver(output or "-ERR no reply\n")

        if handler is None:
            self._originate(arg, finish)  # completes later, when the far end decides
        else:
            finish(handler(arg))

    def _api_status(self, arg: str) -> str:
        now = self.clock.seconds()
        self._roll_sps(now)
        return (
            f"UP {_uptime_text(now - self.started_at)}\n"
            f"FreeSWITCH (Version {VERSION.replace('~', '  ')}) is ready\n"
            f"{self._session_id} session(s) since startup\n"
            f"{len(self.calls)} session(s) - peak {self._session_peak}, last 5min {self._session_peak} \n"
            f"{self._sps_last} session(s) per Sec out of max {self.sessions_per_second}, "
            f"peak {self._sps_peak}, last 5min {self._sps_peak} \n"
            f"{self.max_sessions} session(s) max\n"
            "min idle cpu 0.00/98.67\n"
            "Current Stack Size/Max 240K/8192K\n"
        )

    def _api_version(self, arg: str) -> str:
        return f"FreeSWITCH Version {VERSION} ( 64bit)\n"

    def _api_uptime(self, arg: str) -> str:
        return str(int(self.clock.seconds() - self.started_at))

    def _api_uuid_exists(self, arg: str) -> str:
        call = self.calls.get(arg.strip())
        return "true" if call is not None and not call.hangup_cause else "false"

    def _live(self, uuid: str) -> SimCall | None:
        call = self.calls.get(uuid)
        return None if call is None or call.hangup_cause else call

    def _api_uuid_kill(self, arg: str) -> str:
        argv = separate(arg, " ", limit=2) if arg else []
        if not argv:
            return "-USAGE: <uuid> [cause]\n"
        call = self._live(argv[0])
        if call is None:
            return "-ERR No such channel!\n"
        cause = str2cause(argv[1] if len(argv) > 1 else None)
        self._local_hangup(call, cause)
        return "+OK\n"

    def _api_sched_hangup(self, arg: str) -> str:
        argv = separate(arg, " ", limit=4) if arg else []
        if not argv or not argv[0]:
            return "-USAGE: [+]<time> <uuid> [<cause>]\n"
        call = self._live(argv[1]) if len(argv) > 1 else None
        if call is None:
            return "-ERR No such channel!\n"
        cause = str2cause(argv[2], "ALLOTTED_TIMEOUT") if len(argv) > 2 else "ALLOTTED_TIMEOUT"
        self._schedule_hangup(call, argv[0], cause)
        return "+OK\n"

    def _api_uuid_setvar(self, arg: str) -> str:
        argv = separate(arg, " ", limit=3) if arg else []
        if len(argv) < 2:
            return "-USAGE: <uuid> <var> [value]\n"
        call = self._live(argv[0])
        if call is None:
            return "-ERR No such channel!\n"
        if len(argv) > 2:
            call.variables[argv[1]] = argv[2]
        else:
            call.variables.pop(argv[1], None)
        return "+OK\n"

    def _api_uuid_getvar(self, arg: str) -> str:
        argv = separate(arg, " ", limit=2) if arg else []
        if len(argv) < 2:
            return "-USAGE: <uuid> <var>\n"
        call = self._live(argv[0])
        if call is None:
            return "-ERR No such channel!\n"
        return call.variables.get(argv[1], "_undef_")

    def _api_show(self, arg: str) -> str:
        words = arg.split()
        what = words[0].lower() if words else ""
        if what not in ("channels", "calls"):
            return "-USAGE: " + "codec|endpoint|application|api|dialplan|file|timer|calls [count]|channels [count|like <match string>]|calls|detailed_calls|bridged_calls|detailed_bridged_calls|aliases|complete|chat|management|modules|nat_map|say|interfaces|interface_types|tasks|limits|status\n"
        rows = [self._show_row(call) for call in self.calls.values()]
        if words[-2:] == ["as", "json"]:
            if not rows:
                return '{"row_count": 0}\n'
            return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"), ensure_ascii=False)
        if not rows:
            return "\n0 total.\n"
        lines = [",".join(_SHOW_COLUMNS)] + [",".join(row[c] for c in _SHOW_COLUMNS) for row in rows]
        return "\n".join(lines) + f"\n\n{len(rows)} total.\n"

    def _show_row(self, call: SimCall) -> dict[str, str]:
        flipped = call.flipped
        media = call.media
        return {
            "uuid": call.uuid,
            "direction": "outbound",
            "created": _stamp(call.created_at),
            "created_epoch": str(int(call.created_at)),
            "name": call.channel_name,
            "state": call.running_state,
            "cid_name": call.destination if flipped else (call.caller_id_name or ""),
            "cid_num": call.destination if flipped else call.caller_id_number,
            "ip_addr": "",
            "dest": call.destination,
            "application": "park" if call.parked else "",
            "application_data": "",
            "dialplan": "",
            "context": "default",
            "read_codec": "PCMU" if media else "",
            "read_rate": "8000" if media else "",
            "read_bit_rate": "64000" if media else "",
            "write_codec": "PCMU" if media else "",
            "write_rate": "8000" if media else "",
            "write_bit_rate": "64000" if media else "",
            "secure": "",
            "hostname": self.hostname,
            "presence_id": "",
            "presence_data": "",
            "accountcode": "",
            "callstate": call.call_state,
            "callee_name": "",
            "callee_num": call.caller_id_number if flipped else call.destination,
            "callee_direction": "RECV" if flipped else "",
            "call_uuid": call.uuid,
            "sent_callee_name": "",
            "sent_callee_num": "",
            "initial_cid_name": call.caller_id_name or "",
            "initial_cid_num": call.caller_id_number,
            "initial_ip_addr": "",
            "initial_dest": call.destination,
            "initial_dialplan": "",
            "initial_context": "default",
        }

    # calls
    def _later(self, call: SimCall, delay: float, function: Callable[..., Any], *args: Any) -> IDelayedCall:
        call.timers = [t for t in call.timers if t.active()]
        timer = self.clock.callLater(max(delay, 0), self.atomically, function, *args)
        call.timers.append(timer)
        return timer

    @staticmethod
    def _cancel_timers(call: SimCall) -> None:
        for timer in call.timers:
            if timer.active():
                timer.cancel()
        call.timers.clear()

    def _roll_sps(self, now: float) -> None:
        second = int(now)
        if second != self._sps_second:
            self._sps_last = self._sps_count if second == self._sps_second + 1 else 0
            self._sps_second = second
            self._sps_count = 0

    def _originate(self, arg: str, finish: Callable[[str], None]) -> None:
        try:
            request = parse_originate(arg)
        except UsageError:
            finish(ORIGINATE_USAGE)
            return
        now = self.clock.seconds()
        self._roll_sps(now)
        self._sps_count += 1
        self._sps_peak = max(self._sps_peak, self._sps_count)
        uuid = (request.variables.get("origination_uuid") or str(uuidlib.uuid4()))[:36]
        scenario = scenario_for(request.destination)
        refused = (
            self.is_down
            or self._sps_count > self.sessions_per_second
            or len(self.calls) + 1 > self.max_sessions
            or uuid in self.calls
        )
        if refused or scenario.no_channel:
            # No session was ever created: no channel events, only the job's result.
            log.info("originate {uuid} refused", uuid=uuid)
            finish(f"-ERR {scenario.fail_cause if not refused else 'DESTINATION_OUT_OF_ORDER'}\n")
            return
        call = self._new_call(request, uuid, scenario, now)
        call.job = finish
        self._start_call(call, request)

    def _new_call(self, request: Originate, uuid: str, scenario: Scenario, now: float) -> SimCall:
        self._session_id += 1
        variables = request.variables
        segments = request.dial_string.split("/")
        endpoint = segments[0] if segments else "sofia"
        system: dict[str, str] = {
            "direction": "outbound",
            "is_outbound": "true",
            "uuid": uuid,
            "call_uuid": uuid,
            "session_id": str(self._session_id),
        }
        if endpoint == "sofia" and len(segments) > 2:
            system["sip_profile_name"] = "external" if segments[1] == "gateway" else segments[1]
        system["channel_name"] = request.dial_string
        if endpoint == "sofia":
            system["sip_destination_url"] = f"sip:{segments[-1]}"
        nested_ok = _truthy(variables.get("origination_nested_vars"))
        # switch_channel_set_variable_var_check refuses values holding a variable reference.
        settable = {
            name: value
            for name, value in variables.items()
            if nested_ok or ("${" not in value and "$\\{" not in value)
        }
        merged = {**system, **settable}
        merged["originate_early_media"] = "false" if _truthy(variables.get("ignore_early_media")) else "true"
        merged["originate_endpoint"] = endpoint
        cid_num = variables.get("origination_caller_id_number") or request.cid_num or "0000000000"
        cid_name = variables.get("origination_caller_id_name") or request.cid_name
        return SimCall(
            uuid=uuid,
            destination=request.destination,
            channel_name=request.dial_string,
            variables=merged,
            scenario=scenario,
            created_at=now,
            caller_id_number=cid_num,
            caller_id_name=cid_name,
            ignore_early_media=_truthy(variables.get("ignore_early_media")),
        )

    def _start_call(self, call: SimCall, request: Originate) -> None:
        self.calls[call.uuid] = call
        self._session_peak = max(self._session_peak, len(self.calls))
        log.info(
            "originate {uuid} to {destination}: scenario {digit}",
            uuid=call.uuid,
            destination=call.destination,
            digit=call.scenario.digit,
        )
        call.running_state, call.state_number = "CS_NONE", CHANNEL_STATES["CS_INIT"]
        self._channel_event(call, "CHANNEL_OUTGOING")
        self._set_state(call, "CS_INIT", CHANNEL_STATES["CS_INIT"])
        call.state_number = CHANNEL_STATES["CS_ROUTING"]
        self._channel_event(call, "CHANNEL_CREATE")
        self._channel_event(call, "CHANNEL_ORIGINATE")
        self._set_state(call, "CS_ROUTING", CHANNEL_STATES["CS_ROUTING"])
        self._set_state(call, "CS_CONSUME_MEDIA")
        scenario = call.scenario
        call.originate_timer = self._later(call, request.timeout, self._originate_timeout, call)
        if scenario.ring_at is not None:
            self._later(call, scenario.ring_at, self._ring, call)
        if scenario.early_media_at is not None:
            self._later(call, scenario.early_media_at, self._early_media, call)
        if scenario.answer_at is not None:
            self._later(call, scenario.answer_at, self._answer, call)
        if scenario.fail_at is not None and scenario.fail_cause:
            self._later(call, scenario.fail_at, self._far_end_fails, call)

    def _complete(self, call: SimCall, output: str) -> None:
        """The originate returns (its job result or api response)."""
        finish, call.job = call.job, None
        if call.originate_timer is not None and call.originate_timer.active():
            call.originate_timer.cancel()
        call.originate_timer = None
        if finish is not None:
            finish(output)

    def _ring(self, call: SimCall) -> None:
        if call.hangup_cause or call.answered_at is not None or call.progress_at is not None:
            return
        call.remote_seen = True
        call.progress_at = self.clock.seconds()
        self._channel_event(call, "CHANNEL_PROGRESS")
        self._set_callstate(call, "RINGING")

    def _early_media(self, call: SimCall) -> None:
        if call.hangup_cause or call.answered_at is not None or call.progress_media_at is not None:
            return
        call.remote_seen = True
        call.progress_media_at = self.clock.seconds()
        call.state = "early"
        call.variables["endpoint_disposition"] = "EARLY MEDIA"
        self._channel_event(call, "CHANNEL_PROGRESS_MEDIA")
        self._set_callstate(call, "EARLY")
        call.media = True
        self._flip(call)
        if call.job is not None and not call.ignore_early_media:
            # early_ok: the originate returns on 183 and stops timing the ringing;
            # the leg is parked after the job result (as in call_earlymedia.raw).
            self._complete(call, f"+OK {call.uuid}\n")
            self._park(call)

    def _flip(self, call: SimCall) -> None:
        if call.flipped:
            return
        call.flipped = True
        call.hit_dialplan = True
        self._channel_event(call, "CALL_UPDATE", before=[("Direction", "RECV")])

    def _park(self, call: SimCall) -> None:
        if call.parked:
            return
        call.parked = True
        call.park_uuid = str(uuidlib.uuid4())
        call.variables["current_application"] = "park"
        self._set_state(call, "CS_EXECUTE")
        self._channel_event(
            call, "CHANNEL_EXECUTE", after=[("Application", "park"), ("Application-UUID", call.park_uuid)]
        )
        self._channel_event(call, "CHANNEL_PARK")

    def _answer(self, call: SimCall) -> None:
        if call.hangup_cause or call.answered_at is not None:
            return
        now = self.clock.seconds()
        call.remote_seen = True
        call.answered_at = now
        call.state = "answered"
        call.media = True
        call.variables["endpoint_disposition"] = "ANSWER"
        self._channel_event(call, "CHANNEL_ANSWER")
        self._set_callstate(call, "ACTIVE")
        self._flip(call)
        for name, value in list(call.variables.items()):
            if name.startswith("execute_on_answer"):
                self._execute_on_answer(call, value)
        if call.job is not None:
            self._park(call)
            self._complete(call, f"+OK {call.uuid}\n")
        else:
            self._park(call)
        if call.scenario.hangup_after_answer is not None:
            self._later(call, call.scenario.hangup_after_answer, self._far_end_bye, call)

    def _execute_on_answer(self, call: SimCall, value: str) -> None:
        app, _, data = value.strip().partition(" ")
        if ":" in app and not data:
            app, _, data = app.partition(":")
        if app != "sched_hangup":
            return
        when, _, cause = data.strip().partition(" ")
        self._schedule_hangup(call, when, str2cause(cause.strip(), "ALLOTTED_TIMEOUT") if cause.strip() else "ALLOTTED_TIMEOUT")

    def _schedule_hangup(self, call: SimCall, when: str, cause: str) -> None:
        now = self.clock.seconds()
        digits = when[1:] if when.startswith("+") else when
        try:
            seconds = int(digits or "0")
        except ValueError:
            seconds = 0
        delay = seconds if when.startswith("+") else seconds - now
        if when.startswith("+") and seconds == 0:
            self._local_hangup(call, cause)
            return
        self._later(call, delay, self._scheduled_hangup, call, cause)

    def _scheduled_hangup(self, call: SimCall, cause: str) -> None:
        if call.uuid in self.calls and not call.hangup_cause:
            self._local_hangup(call, cause)

    def _local_hangup(self, call: SimCall, cause: str) -> None:
        self._hangup(call, cause, "send_bye" if call.answered_at is not None else "send_cancel")

    def _far_end_fails(self, call: SimCall) -> None:
        scenario = call.scenario
        if call.hangup_cause or call.answered_at is not None:
            return
        call.remote_seen = True
        self._hangup(call, scenario.fail_cause or "NORMAL_CLEARING", "recv_refuse", scenario.fail_sip_status)

    def _far_end_bye(self, call: SimCall) -> None:
        if not call.hangup_cause:
            self._hangup(call, "NORMAL_CLEARING", "recv_bye", 200)

    def _originate_timeout(self, call: SimCall) -> None:
        call.originate_timer = None
        if call.job is not None and not call.hangup_cause:
            self._hangup(call, "NO_ANSWER", "send_cancel", timeout=True)

    def _hangup(
        self,
        call: SimCall,
        cause: str,
        disposition: str,
        sip_status: int | None = None,
        timeout: bool = False,
    ) -> None:
        """Tear the channel down with every event FreeSWITCH fires, in its order."""
        if call.hangup_cause:
            return
        self._cancel_timers(call)
        now = self.clock.seconds()
        call.hangup_cause = cause
        call.hangup_at = now
        call.state = "hangup"
        call.state_number = CHANNEL_STATES["CS_HANGUP"]
        variables = call.variables
        variables["sip_hangup_disposition"] = disposition
        if sip_status is not None:
            if disposition == "recv_refuse":
                variables["sip_invite_failure_status"] = str(sip_status)
            variables["sip_term_status"] = str(sip_status)
            variables["proto_specific_hangup_cause"] = f"sip:{sip_status}"
            variables["sip_term_cause"] = str(q850(cause))
        self._channel_event(call, "CHANNEL_HANGUP")
        if timeout:
            # On originate_timeout the job result comes right after CHANNEL_HANGUP.
            self._complete(call, f"-ERR {cause}\n")
        if call.parked:
            self._channel_event(call, "CHANNEL_UNPARK")
            self._channel_event(
                call,
                "CHANNEL_EXECUTE_COMPLETE",
                after=[
                    ("Application", "park"),
                    ("Application-Response", "_none_"),
                    ("Application-UUID", call.park_uuid),
                ],
            )
        self._set_state(call, "CS_HANGUP")
        self._set_callstate(call, "HANGUP")
        self._set_state(call, "CS_REPORTING")
        self._add_cdr_variables(call, now)
        self._channel_event(call, "CHANNEL_HANGUP_COMPLETE", before=[("Hangup-Cause", cause)])
        if call.job is not None:
            # Refused, rejected or killed before the originate returned.
            self._complete(call, f"-ERR {cause}\n")
        call.state_number = CHANNEL_STATES["CS_DESTROY"]
        self._channel_event(call, "CHANNEL_DESTROY")
        self._set_state(call, "CS_DESTROY", CHANNEL_STATES["CS_DESTROY"])
        self.calls.pop(call.uuid, None)
        log.info("call {uuid} ended {cause}", uuid=call.uuid, cause=cause)

    @staticmethod
    def _add_cdr_variables(call: SimCall, end: float) -> None:
        start = call.created_at
        answer = call.answered_at
        progress = call.progress_at
        media = call.progress_media_at

        def since(t: float | None, unit: int) -> str:
            return "0" if t is None else str(int((end - t) * unit))

        def after_start(t: float | None, unit: int) -> str:
            return "0" if t is None else str(int((t - start) * unit))

        variables = call.variables
        variables["hangup_cause"] = call.hangup_cause or "NORMAL_CLEARING"
        variables["hangup_cause_q850"] = str(q850(call.hangup_cause or "NORMAL_CLEARING"))
        variables["digits_dialed"] = "none"
        variables["start_stamp"] = _stamp(start)
        if answer is not None:
            variables["answer_stamp"] = _stamp(answer)
        if progress is not None:
            variables["progress_stamp"] = _stamp(progress)
        if media is not None:
            variables["progress_media_stamp"] = _stamp(media)
        variables["end_stamp"] = _stamp(end)
        for name, moment in (("start", start), ("answer", answer), ("progress", progress), ("progress_media", media), ("end", end)):
            variables[f"{name}_epoch"] = "0" if moment is None else str(int(moment))
            variables[f"{name}_uepoch"] = _usec(moment)
        variables["caller_id"] = (
            f'"{call.caller_id_name}" <{call.caller_id_number}>' if call.caller_id_name else call.caller_id_number
        )
        variables["duration"] = str(int(end) - int(start))
        variables["billsec"] = "0" if answer is None else str(int(end) - int(answer))
        variables["progresssec"] = "0" if progress is None else str(int(progress) - int(start))
        variables["answersec"] = "0" if answer is None else str(int(answer) - int(start))
        variables["waitsec"] = variables["answersec"]
        variables["progress_mediasec"] = "0" if media is None else str(int(media) - int(start))
        variables["mduration"] = since(start, 1000)
        variables["billmsec"] = since(answer, 1000)
        variables["progressmsec"] = after_start(progress, 1000)
        variables["answermsec"] = after_start(answer, 1000)
        variables["progress_mediamsec"] = after_start(media, 1000)
        variables["uduration"] = since(start, 1_000_000)
        variables["billusec"] = since(answer, 1_000_000)


def _truthy(value: str | None) -> bool:
    """FreeSWITCH's switch_true."""
    return (value or "").strip().lower() in ("yes", "on", "true", "t", "enabled", "active", "allow") or (
        (value or "").strip().isdigit() and int((value or "").strip()) != 0
    )
