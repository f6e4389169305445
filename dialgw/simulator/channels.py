"""A channel of the simulated switch: what it records and the variables FreeSWITCH gives it.

A :class:`Channel` is plain data; the switch (:mod:`dialgw.simulator.switch`)
moves it through its states and :mod:`dialgw.simulator.events` describes it
in events.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IDelayedCall

from dialgw.simulator.causes import q850
from dialgw.simulator.dialstring import Originate
from dialgw.simulator.scenarios import Scenario

# switch_types.h switch_channel_state_t and switch_channel_callstate_t, numbered.
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


def stamp(seconds: float) -> str:
    """``YYYY-MM-DD hh:mm:ss`` (UTC), as the ``*_stamp`` variables and ``Event-Date-Local`` write it."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def usec(seconds: float | None) -> str:
    """Microseconds since the epoch, ``0`` for a moment that has not come."""
    return "0" if seconds is None else str(int(seconds * 1_000_000))


def truthy(value: str | None) -> bool:
    """FreeSWITCH's switch_true."""
    text = (value or "").strip()
    return text.lower() in ("yes", "on", "true", "t", "enabled", "active", "allow") or (
        text.isdigit() and int(text) != 0
    )


@attrs.define(eq=False)
class Channel:
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


def new_channel(request: Originate, uuid: str, session_id: int, scenario: Scenario, now: float) -> Channel:
    """The channel an ``originate`` creates, with the variables FreeSWITCH sets on it."""
    variables = request.variables
    segments = request.dial_string.split("/")
    endpoint = segments[0] if segments else "sofia"
    system: dict[str, str] = {
        "direction": "outbound",
        "is_outbound": "true",
        "uuid": uuid,
        "call_uuid": uuid,
        "session_id": str(session_id),
    }
    if endpoint == "sofia" and len(segments) > 2:
        system["sip_profile_name"] = "external" if segments[1] == "gateway" else segments[1]
    system["channel_name"] = request.dial_string
    if endpoint == "sofia":
        system["sip_destination_url"] = f"sip:{segments[-1]}"
    nested_ok = truthy(variables.get("origination_nested_vars"))
    # switch_channel_set_variable_var_check refuses values holding a variable reference.
    settable = {
        name: value
        for name, value in variables.items()
        if nested_ok or ("${" not in value and "$\\{" not in value)
    }
    merged = {**system, **settable}
    merged["originate_early_media"] = "false" if truthy(variables.get("ignore_early_media")) else "true"
    merged["originate_endpoint"] = endpoint
    cid_num = variables.get("origination_caller_id_number") or request.cid_num or "0000000000"
    cid_name = variables.get("origination_caller_id_name") or request.cid_name
    return Channel(
        uuid=uuid,
        destination=request.destination,
        channel_name=request.dial_string,
        variables=merged,
        scenario=scenario,
        created_at=now,
        caller_id_number=cid_num,
        caller_id_name=cid_name,
        ignore_early_media=truthy(variables.get("ignore_early_media")),
    )


def add_cdr_variables(call: Channel, end: float) -> None:
    """The variables FreeSWITCH adds when a channel reports (hangup cause, stamps, durations)."""
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
    variables["start_stamp"] = stamp(start)
    if answer is not None:
        variables["answer_stamp"] = stamp(answer)
    if progress is not None:
        variables["progress_stamp"] = stamp(progress)
    if media is not None:
        variables["progress_media_stamp"] = stamp(media)
    variables["end_stamp"] = stamp(end)
    moments = (("start", start), ("answer", answer), ("progress", progress), ("progress_media", media), ("end", end))
    for name, moment in moments:
        variables[f"{name}_epoch"] = "0" if moment is None else str(int(moment))
        variables[f"{name}_uepoch"] = usec(moment)
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
