"""The events the simulated switch fires, header by header as FreeSWITCH builds them.

:class:`EventSource` stamps every event with the switch's standard headers
(its Core-UUID, hostname, date and sequence number); :meth:`EventSource.channel`
adds what ``switch_channel_event_set_data`` adds for a channel.
"""

from __future__ import annotations

import time
import uuid as uuidlib

import attrs
from twisted.internet.interfaces import IReactorTime

from dialgw.simulator.channels import CHANNEL_STATES, Channel, stamp, usec
from dialgw.simulator.wire import Event

Headers = list[tuple[str, str]]

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

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# The codec headers of a channel with media (PCMU, as in the captures).
_CODEC_HEADERS: Headers = [
    ("Channel-Read-Codec-Name", "PCMU"),
    ("Channel-Read-Codec-Rate", "8000"),
    ("Channel-Read-Codec-Bit-Rate", "64000"),
    ("Channel-Write-Codec-Name", "PCMU"),
    ("Channel-Write-Codec-Rate", "8000"),
    ("Channel-Write-Codec-Bit-Rate", "64000"),
]


def event_name(token: str) -> str | None:
    """An event name as ``event``/``nixevent`` accept it (``SWITCH_EVENT_`` prefix optional), or None."""
    upper = token.upper()
    if upper.startswith("SWITCH_EVENT_"):
        upper = upper[len("SWITCH_EVENT_") :]
    return upper if upper in EVENT_NAMES else None


def gmt(seconds: float) -> str:
    """``Event-Date-GMT``: an RFC 1123 date."""
    t = time.gmtime(seconds)
    clock = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    return f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} {clock} GMT"


def uptime_text(seconds: float) -> str:
    """The uptime as ``status`` and ``Up-Time`` spell it out."""
    usec_total = int(seconds * 1_000_000)
    micro = usec_total % 1000
    msec = (usec_total // 1000) % 1000
    whole = usec_total // 1_000_000
    years, rest = divmod(whole, 365 * 86400)
    days, rest = divmod(rest, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (
        f"{years} years, {days} days, {hours} hours, {minutes} minutes, "
        f"{secs} seconds, {msec} milliseconds, {micro} microseconds"
    )


@attrs.define
class EventSource:
    """One run of the switch as its events name it: Core-UUID, hostname and the sequence so far."""

    clock: IReactorTime
    hostname: str
    core_uuid: str = attrs.field(factory=lambda: str(uuidlib.uuid4()))
    sequence: int = 0

    def event(self, name: str, headers: Headers | None = None, body: str | None = None) -> Event:
        """An event: the standard headers, then ``headers``, then the body if any."""
        now = self.clock.seconds()
        self.sequence += 1
        source, function, line = _CALLING.get(name, ("mod_event_socket.c", "simulator", 0))
        standard = [
            ("Event-Name", name),
            ("Core-UUID", self.core_uuid),
            ("FreeSWITCH-Hostname", self.hostname),
            ("FreeSWITCH-Switchname", self.hostname),
            ("FreeSWITCH-IPv4", "127.0.0.1"),
            ("FreeSWITCH-IPv6", "::1"),
            ("Event-Date-Local", stamp(now)),
            ("Event-Date-GMT", gmt(now)),
            ("Event-Date-Timestamp", usec(now)),
            ("Event-Calling-File", source),
            ("Event-Calling-Function", function),
            ("Event-Calling-Line-Number", str(line)),
            ("Event-Sequence", str(self.sequence)),
        ]
        return Event(standard + list(headers or []), body)

    def channel(
        self,
        call: Channel,
        name: str,
        before: Headers | None = None,
        after: Headers | None = None,
    ) -> Event:
        """A channel event: ``before``, the channel's data and caller profile, ``after``, its variables."""
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
            headers += _CODEC_HEADERS
        headers += caller_profile(call)
        headers += after or []
        if name in VARIABLE_EVENTS:
            headers += [(f"variable_{key}", value) for key, value in call.variables.items()]
        return self.event(name, headers)


def caller_profile(call: Channel) -> Headers:
    """The ``Caller-*`` headers (``switch_caller_profile_event_set_data``)."""
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
        ("Caller-Profile-Created-Time", usec(call.created_at)),
        ("Caller-Channel-Created-Time", usec(call.created_at)),
        ("Caller-Channel-Answered-Time", usec(call.answered_at)),
        ("Caller-Channel-Progress-Time", usec(call.progress_at)),
        ("Caller-Channel-Progress-Media-Time", usec(call.progress_media_at)),
        ("Caller-Channel-Hangup-Time", usec(hung)),
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
