"""The simulated switch's call model: channels created by ``originate`` and played out by scenario.

:class:`Switch` owns the live channels, its capacity counters and the order
of everything it does: each step (a command, a timer) runs through
:meth:`Switch.atomically`, and every event it fires goes to the ``fire``
callable it was given, in the order FreeSWITCH fires them. It knows nothing
of sockets.
"""

from __future__ import annotations

import uuid as uuidlib
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from dialgw.simulator.causes import q850, str2cause
from dialgw.simulator.channels import CALL_STATES, CHANNEL_STATES, Channel, add_cdr_variables, new_channel
from dialgw.simulator.dialstring import ORIGINATE_USAGE, UsageError, parse_originate
from dialgw.simulator.events import VERSION, EventSource, Headers, uptime_text
from dialgw.simulator.scenarios import scenario_for
from dialgw.simulator.wire import Event

log = Logger()

_T = TypeVar("_T")


@attrs.define
class Counters:
    """What ``status`` and HEARTBEAT report about sessions since the switch started."""

    started_at: float
    sessions: int = 0  # session(s) since startup; also the last session_id given
    sps_second: int = -1
    sps_count: int = 0
    sps_last: int = 0
    sps_peak: int = 0
    session_peak: int = 0

    def roll(self, now: float) -> None:
        """Start counting a new second of originates when ``now`` is in one."""
        second = int(now)
        if second != self.sps_second:
            self.sps_last = self.sps_count if second == self.sps_second + 1 else 0
            self.sps_second = second
            self.sps_count = 0


class Switch:
    """The switch's channels, capacity and scenarios, on the clock it is given."""

    def __init__(
        self,
        clock: IReactorTime,
        fire: Callable[[Event], None],
        hostname: str = "sim",
        max_sessions: int = 1000,
        sessions_per_second: int = 30,
    ) -> None:
        self.clock = clock
        self.fire = fire
        self.hostname = hostname
        self.max_sessions = max_sessions
        self.sessions_per_second = sessions_per_second
        self.calls: dict[str, Channel] = {}
        self.is_down = False
        self.events = EventSource(clock, hostname)
        self.counters = Counters(clock.seconds())
        self._depth = 0
        self._after: deque[Callable[[], object]] = deque()

    # steps
    def atomically(self, function: Callable[..., _T], *args: Any) -> _T:
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

    # the switch as a whole
    def restart(self) -> None:
        """Forget every call silently; a new Core-UUID, counters from zero."""
        self.stop_timers()
        self.calls.clear()
        self.events = EventSource(self.clock, self.hostname)
        self.counters = Counters(self.clock.seconds())
        self.is_down = False

    def stop_timers(self) -> None:
        """Cancel every call's timers (the calls stay as they are)."""
        for call in self.calls.values():
            self._cancel_timers(call)

    def shutdown(self) -> None:
        """SHUTDOWN event, then every call hung up with SYSTEM_SHUTDOWN; the switch is down after."""
        self.fire(self.events.event("SHUTDOWN", [("Event-Info", "System Shutting Down")]))
        for call in list(self.calls.values()):
            self._hangup(call, "SYSTEM_SHUTDOWN", "send_bye" if call.answered_at else "send_cancel")
        self.is_down = True

    def heartbeat(self, interval: float) -> None:
        """Fire HEARTBEAT and the RE_SCHEDULE of the next one, ``interval`` seconds on."""
        if self.is_down:
            return
        now = self.clock.seconds()
        counters = self.counters
        counters.roll(now)
        up = now - counters.started_at
        headers = [
            ("Event-Info", "System Ready"),
            ("Up-Time", uptime_text(up)),
            ("FreeSWITCH-Version", VERSION),
            ("Uptime-msec", str(int(up * 1000))),
            ("Session-Count", str(len(self.calls))),
            ("Max-Sessions", str(self.max_sessions)),
            ("Session-Per-Sec", str(max(self.sessions_per_second - counters.sps_count, 0))),
            ("Session-Per-Sec-Last", str(counters.sps_last)),
            ("Session-Per-Sec-Max", str(counters.sps_peak)),
            ("Session-Per-Sec-FiveMin", str(counters.sps_peak)),
            ("Session-Since-Startup", str(counters.sessions)),
            ("Session-Peak-Max", str(counters.session_peak)),
            ("Session-Peak-FiveMin", str(counters.session_peak)),
            ("Idle-CPU", "98.466667"),
        ]
        self.fire(self.events.event("HEARTBEAT", headers))
        schedule = [
            ("Task-ID", "1"),
            ("Task-Desc", "heartbeat"),
            ("Task-Group", "core"),
            ("Task-Runtime", str(int(now + interval))),
        ]
        self.fire(self.events.event("RE_SCHEDULE", schedule))

    # one call, from outside
    def live(self, uuid: str) -> Channel | None:
        """The call with this UUID unless it is gone or going."""
        call = self.calls.get(uuid)
        return None if call is None or call.hangup_cause else call

    def remote_hangup(self, uuid: str, cause: str) -> bool:
        """The far end hangs up (a BYE, or a refusal while ringing); False if no such call."""
        call = self.live(uuid)
        if call is None:
            return False
        if call.answered_at is not None:
            self._hangup(call, cause, "recv_bye", 200)
        else:
            self._hangup(call, cause, "recv_refuse")
        return True

    def local_hangup(self, call: Channel, cause: str) -> None:
        """The switch hangs the call up (``uuid_kill``, ``sched_hangup``)."""
        self._hangup(call, cause, "send_bye" if call.answered_at is not None else "send_cancel")

    def schedule_hangup(self, call: Channel, when: str, cause: str) -> None:
        """``sched_hangup``: ``+N`` seconds from now, or at epoch ``N``; ``+0`` at once."""
        now = self.clock.seconds()
        digits = when[1:] if when.startswith("+") else when
        try:
            seconds = int(digits or "0")
        except ValueError:
            seconds = 0
        delay = seconds if when.startswith("+") else seconds - now
        if when.startswith("+") and seconds == 0:
            self.local_hangup(call, cause)
            return
        self._later(call, delay, self._scheduled_hangup, call, cause)

    def originate(self, arg: str, finish: Callable[[str], None]) -> None:
        """``originate``: ``finish(output)`` once the far end decides (or at once if refused)."""
        try:
            request = parse_originate(arg)
        except UsageError:
            finish(ORIGINATE_USAGE)
            return
        now = self.clock.seconds()
        counters = self.counters
        counters.roll(now)
        counters.sps_count += 1
        counters.sps_peak = max(counters.sps_peak, counters.sps_count)
        uuid = (request.variables.get("origination_uuid") or str(uuidlib.uuid4()))[:36]
        scenario = scenario_for(request.destination)
        refused = (
            self.is_down
            or counters.sps_count > self.sessions_per_second
            or len(self.calls) + 1 > self.max_sessions
            or uuid in self.calls
        )
        if refused or scenario.no_channel:
            # No session was ever created: no channel events, only the job's result.
            log.info("originate {uuid} refused", uuid=uuid)
            finish(f"-ERR {scenario.fail_cause if not refused else 'DESTINATION_OUT_OF_ORDER'}\n")
            return
        counters.sessions += 1
        call = new_channel(request, uuid, counters.sessions, scenario, now)
        call.job = finish
        self._start_call(call, request.timeout)

    # a call playing out
    def _start_call(self, call: Channel, timeout: float) -> None:
        self.calls[call.uuid] = call
        self.counters.session_peak = max(self.counters.session_peak, len(self.calls))
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
        call.originate_timer = self._later(call, timeout, self._originate_timeout, call)
        if scenario.ring_at is not None:
            self._later(call, scenario.ring_at, self._ring, call)
        if scenario.early_media_at is not None:
            self._later(call, scenario.early_media_at, self._early_media, call)
        if scenario.answer_at is not None:
            self._later(call, scenario.answer_at, self._answer, call)
        if scenario.fail_at is not None and scenario.fail_cause:
            self._later(call, scenario.fail_at, self._far_end_fails, call)

    def _complete(self, call: Channel, output: str) -> None:
        """The originate returns (its job result or api response)."""
        finish, call.job = call.job, None
        if call.originate_timer is not None and call.originate_timer.active():
            call.originate_timer.cancel()
        call.originate_timer = None
        if finish is not None:
            finish(output)

    def _ring(self, call: Channel) -> None:
        if call.hangup_cause or call.answered_at is not None or call.progress_at is not None:
            return
        call.remote_seen = True
        call.progress_at = self.clock.seconds()
        self._channel_event(call, "CHANNEL_PROGRESS")
        self._set_callstate(call, "RINGING")

    def _early_media(self, call: Channel) -> None:
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

    def _flip(self, call: Channel) -> None:
        if call.flipped:
            return
        call.flipped = True
        call.hit_dialplan = True
        self._channel_event(call, "CALL_UPDATE", before=[("Direction", "RECV")])

    def _park(self, call: Channel) -> None:
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

    def _answer(self, call: Channel) -> None:
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

    def _execute_on_answer(self, call: Channel, value: str) -> None:
        app, _, data = value.strip().partition(" ")
        if ":" in app and not data:
            app, _, data = app.partition(":")
        if app != "sched_hangup":
            return
        when, _, cause = data.strip().partition(" ")
        cause = cause.strip()
        self.schedule_hangup(call, when, str2cause(cause, "ALLOTTED_TIMEOUT") if cause else "ALLOTTED_TIMEOUT")

    def _scheduled_hangup(self, call: Channel, cause: str) -> None:
        if call.uuid in self.calls and not call.hangup_cause:
            self.local_hangup(call, cause)

    def _far_end_fails(self, call: Channel) -> None:
        scenario = call.scenario
        if call.hangup_cause or call.answered_at is not None:
            return
        call.remote_seen = True
        self._hangup(call, scenario.fail_cause or "NORMAL_CLEARING", "recv_refuse", scenario.fail_sip_status)

    def _far_end_bye(self, call: Channel) -> None:
        if not call.hangup_cause:
            self._hangup(call, "NORMAL_CLEARING", "recv_bye", 200)

    def _originate_timeout(self, call: Channel) -> None:
        call.originate_timer = None
        if call.job is not None and not call.hangup_cause:
            self._hangup(call, "NO_ANSWER", "send_cancel", timeout=True)

    def _hangup(
        self,
        call: Channel,
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
        add_cdr_variables(call, now)
        self._channel_event(call, "CHANNEL_HANGUP_COMPLETE", before=[("Hangup-Cause", cause)])
        if call.job is not None:
            # Refused, rejected or killed before the originate returned.
            self._complete(call, f"-ERR {cause}\n")
        call.state_number = CHANNEL_STATES["CS_DESTROY"]
        self._channel_event(call, "CHANNEL_DESTROY")
        self._set_state(call, "CS_DESTROY", CHANNEL_STATES["CS_DESTROY"])
        self.calls.pop(call.uuid, None)
        log.info("call {uuid} ended {cause}", uuid=call.uuid, cause=cause)

    # events of a call
    def _channel_event(
        self, call: Channel, name: str, before: Headers | None = None, after: Headers | None = None
    ) -> None:
        self.fire(self.events.channel(call, name, before, after))

    def _set_state(self, call: Channel, running: str, number: int | None = None) -> None:
        call.running_state = running
        call.state_number = CHANNEL_STATES[running] if number is None else number
        self._channel_event(call, "CHANNEL_STATE")

    def _set_callstate(self, call: Channel, new: str) -> None:
        old, call.call_state = call.call_state, new
        self._channel_event(
            call,
            "CHANNEL_CALLSTATE",
            before=[("Original-Channel-Call-State", old), ("Channel-Call-State-Number", str(CALL_STATES[new]))],
        )

    # timers of a call
    def _later(self, call: Channel, delay: float, function: Callable[..., object], *args: Any) -> IDelayedCall:
        call.timers = [t for t in call.timers if t.active()]
        timer = self.clock.callLater(max(delay, 0), self.atomically, function, *args)
        call.timers.append(timer)
        return timer

    @staticmethod
    def _cancel_timers(call: Channel) -> None:
        for timer in call.timers:
            if timer.active():
                timer.cancel()
        call.timers.clear()
