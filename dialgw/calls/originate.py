"""Building the one ESL command that places a call.

Only values the gateway generated or validated go into it: the validated
digits of ``to`` and ``from``, UUIDs it made, and integers. Each is checked
again here, so that no caller of this module can ever put a newline, comma,
brace or quote into the variable block (ESL.md, Originate).
"""

from __future__ import annotations

import re

from dialgw import ids
from dialgw.numbers import is_valid_number

_DIAL_STRING = re.compile(r"[A-Za-z0-9_./@:+-]*\{to\}[A-Za-z0-9_./@:+-]*", re.ASCII)


class UnsafeOriginate(ValueError):
    """A value that must never reach FreeSWITCH was about to."""


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise UnsafeOriginate(what)


def originate_command(
    *,
    session_uuid: str,
    channel_uuid: str,
    node_id: str,
    to: str,
    from_: str,
    timeout_sec: int,
    max_duration_sec: int,
    dial_string: str,
) -> str:
    """The ``originate`` API command (sent with ``bgapi``) for one session.

    - ``origination_uuid`` makes our UUID the channel's ``Unique-ID``;
    - ``ignore_early_media=true`` keeps ``originate_timeout`` running through
      early media, so the ring timeout bounds the whole time before answer;
    - ``execute_on_answer`` has FreeSWITCH itself end the call
      ``max_duration_sec`` after answer, gateway or no gateway;
    - ``dialgw_session``/``dialgw_node`` let reconciliation (and other gateway
      nodes) tell whose channel this is.
    """
    _require(ids.is_session_id(session_uuid), "session_uuid")
    _require(ids.is_uuid(channel_uuid), "channel_uuid")
    _require(session_uuid.endswith(channel_uuid), "session/channel uuid mismatch")
    _require(ids.is_node_id(node_id), "node_id")
    _require(is_valid_number(to), "to")
    _require(is_valid_number(from_), "from")
    _require(type(timeout_sec) is int and 1 <= timeout_sec <= 300, "timeout_sec")
    _require(type(max_duration_sec) is int and 1 <= max_duration_sec <= 14400, "max_duration_sec")
    _require(
        _DIAL_STRING.fullmatch(dial_string) is not None and dial_string.count("{to}") == 1,
        "dial_string",
    )
    variables = ",".join(
        (
            f"origination_uuid={channel_uuid}",
            f"origination_caller_id_number={from_}",
            "ignore_early_media=true",
            f"originate_timeout={timeout_sec}",
            f"execute_on_answer='sched_hangup +{max_duration_sec} ALLOTTED_TIMEOUT'",
            f"dialgw_session={session_uuid}",
            f"dialgw_node={node_id}",
        )
    )
    return f"originate {{{variables}}}{dial_string.replace('{to}', to)} &park()"
