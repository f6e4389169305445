"""The call state machine: pure, no sockets, no SQL.

A session's ``status`` moves forward only (SPEC §2)::

    dialing -> ringing -> early_media -> answered -> ended

``ringing`` and ``early_media`` may be skipped, and a failed originate goes
from ``dialing`` straight to ``ended``. A late or repeated signal never moves
a session backwards and never yields the same status twice.
"""

from __future__ import annotations

import enum

import attrs

DIALING = "dialing"
RINGING = "ringing"
EARLY_MEDIA = "early_media"
ANSWERED = "answered"
ENDED = "ended"

STATUSES: tuple[str, ...] = (DIALING, RINGING, EARLY_MEDIA, ANSWERED, ENDED)
#: The statuses of a session that still has (or may get) a call: all but
#: ``ended``. The one statement of what "live" means; the store's queries of
#: live sessions spell it from here.
LIVE_STATUSES: tuple[str, ...] = tuple(status for status in STATUSES if status != ENDED)
_RANK = {status: rank for rank, status in enumerate(STATUSES)}

#: The webhook event name announcing each status.
EVENT_FOR_STATUS = {
    DIALING: "session.dialing",
    RINGING: "session.ringing",
    EARLY_MEDIA: "session.early_media",
    ANSWERED: "call.answered",
    ENDED: "call.hangup",
}


class Signal(enum.Enum):
    """What FreeSWITCH (or the gateway's own watchdogs) said about a call."""

    PROGRESS = "progress"  # CHANNEL_PROGRESS: 180 ringing
    PROGRESS_MEDIA = "progress_media"  # CHANNEL_PROGRESS_MEDIA: 183 early media
    ANSWER = "answer"  # CHANNEL_ANSWER: the only proof of an answer
    HANGUP = "hangup"  # CHANNEL_HANGUP_COMPLETE, or a gateway decision
    ORIGINATE_OK = "originate_ok"  # BACKGROUND_JOB "+OK <uuid>": never an answer
    ORIGINATE_FAILED = "originate_failed"  # BACKGROUND_JOB "-ERR <CAUSE>"


@attrs.frozen
class CallSignal:
    signal: Signal
    hangup_cause: str | None = None


@attrs.frozen
class Transition:
    """A status change to record, and why."""

    from_status: str
    to_status: str
    hangup_cause: str | None = None


_TARGET = {
    Signal.PROGRESS: RINGING,
    Signal.PROGRESS_MEDIA: EARLY_MEDIA,
    Signal.ANSWER: ANSWERED,
    Signal.HANGUP: ENDED,
    Signal.ORIGINATE_FAILED: ENDED,
}

#: Used when FreeSWITCH reports an end without naming its cause.
UNKNOWN_CAUSE = "NORMAL_UNSPECIFIED"


def is_forward(current: str, target: str) -> bool:
    """Whether moving from ``current`` to ``target`` is a step forward."""
    return _RANK[target] > _RANK[current]


def next_transition(current: str, signal: CallSignal) -> Transition | None:
    """The transition ``signal`` causes in a session at ``current``, if any."""
    target = _TARGET.get(signal.signal)
    if target is None or not is_forward(current, target):
        return None
    cause = None
    if target == ENDED:
        cause = signal.hangup_cause or UNKNOWN_CAUSE
    return Transition(current, target, cause)


_CALL_STATE_STATUS = {
    "RINGING": RINGING,
    "EARLY": EARLY_MEDIA,
    "ACTIVE": ANSWERED,
    "HELD": ANSWERED,
    "UNHELD": ANSWERED,
}


def signal_for_call_state(call_state: str, answer_state: str = "") -> CallSignal | None:
    """The signal a channel's ``Channel-Call-State`` implies (for reconciliation)."""
    status = _CALL_STATE_STATUS.get(call_state)
    if answer_state == "answered":
        status = ANSWERED
    if status == RINGING:
        return CallSignal(Signal.PROGRESS)
    if status == EARLY_MEDIA:
        return CallSignal(Signal.PROGRESS_MEDIA)
    if status == ANSWERED:
        return CallSignal(Signal.ANSWER)
    return None


def signal_for_job_result(body: str) -> CallSignal | None:
    """The signal of a BACKGROUND_JOB body: ``+OK <uuid>`` or ``-ERR <CAUSE>``."""
    text = body.strip()
    if text.startswith("+OK"):
        return CallSignal(Signal.ORIGINATE_OK)
    if text.startswith("-ERR"):
        cause = text[4:].strip().split(None, 1)
        return CallSignal(Signal.ORIGINATE_FAILED, _cause_name(cause[0] if cause else ""))
    if text.startswith("-USAGE"):
        return CallSignal(Signal.ORIGINATE_FAILED, "INVALID_NUMBER_FORMAT")
    return None


def _cause_name(text: str) -> str:
    # Cause names are upper-case words; anything else (e.g. "-ERR originate
    # Command not found!") is reported as an unspecified failure.
    if text and text.replace("_", "").isalnum() and text.isupper():
        return text
    return UNKNOWN_CAUSE


_EVENT_SIGNAL = {
    "CHANNEL_PROGRESS": Signal.PROGRESS,
    "CHANNEL_PROGRESS_MEDIA": Signal.PROGRESS_MEDIA,
    "CHANNEL_ANSWER": Signal.ANSWER,
    "CHANNEL_HANGUP_COMPLETE": Signal.HANGUP,
}

#: The channel events the gateway subscribes to (plus BACKGROUND_JOB, HEARTBEAT).
CHANNEL_EVENTS: tuple[str, ...] = tuple(_EVENT_SIGNAL)


def signal_for_channel_event(event_name: str, hangup_cause: str | None) -> CallSignal | None:
    """The signal of a channel event of ours, or None for events we ignore."""
    signal = _EVENT_SIGNAL.get(event_name)
    if signal is None:
        return None
    if signal is Signal.HANGUP:
        return CallSignal(signal, _cause_name(hangup_cause or ""))
    return CallSignal(signal)
