"""What the simulated far end does, chosen by the destination number's last digit.

Times are seconds on the simulator's clock, counted from the originate.

==========  ==========================================================================
last digit  behaviour
==========  ==========================================================================
``1``       rings (180, CHANNEL_PROGRESS) at 0.2 s, answers at 1 s, the far end hangs
            up 3 s after the answer with NORMAL_CLEARING
``2``       busy: USER_BUSY (486) at 0.5 s, no ringing; the job says ``-ERR USER_BUSY``
``3``       rings at 0.2 s and never answers; at ``originate_timeout`` (default 60)
            the leg ends NO_ANSWER and the job says ``-ERR NO_ANSWER``
``4``       early media (183, CHANNEL_PROGRESS_MEDIA) at 0.2 s, answers at 1.5 s, the
            far end hangs up 3 s after the answer. Without ``ignore_early_media=true``
            the job says ``+OK`` at the early media and ``originate_timeout`` stops
            applying; with it, ``+OK`` comes at the answer
``5``       rejected: CALL_REJECTED (603) at 0.5 s, no ringing
``6``       rings at 0.2 s, answers at 1 s, stays up until ``uuid_kill``,
            ``sched_hangup`` (or ``execute_on_answer``) or ``hangup()``
``7``       fails before any channel exists: no channel events at all, only the job's
            ``-ERR DESTINATION_OUT_OF_ORDER``
``8``       as ``6``
``9``       as ``6``
``0``       as ``6``
==========  ==========================================================================

A destination with no digit at all behaves as ``0``.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Scenario:
    """One far-end behaviour; every time is seconds after the originate (None: never)."""

    digit: str
    description: str
    ring_at: float | None = None
    early_media_at: float | None = None
    answer_at: float | None = None
    fail_at: float | None = None
    fail_cause: str | None = None
    fail_sip_status: int | None = None
    hangup_after_answer: float | None = None
    no_channel: bool = False



def _stay_up(digit: str) -> Scenario:
    return Scenario(digit, "answer, stay up", ring_at=0.2, answer_at=1.0)


SCENARIOS: dict[str, Scenario] = {
    "1": Scenario("1", "answer, far end hangs up", ring_at=0.2, answer_at=1.0, hangup_after_answer=3.0),
    "2": Scenario("2", "busy", fail_at=0.5, fail_cause="USER_BUSY", fail_sip_status=486),
    "3": Scenario("3", "no answer", ring_at=0.2),
    "4": Scenario("4", "early media, then answer", early_media_at=0.2, answer_at=1.5, hangup_after_answer=3.0),
    "5": Scenario("5", "rejected", fail_at=0.5, fail_cause="CALL_REJECTED", fail_sip_status=603),
    "6": _stay_up("6"),
    "7": Scenario("7", "failure without a channel", fail_cause="DESTINATION_OUT_OF_ORDER", no_channel=True),
    "8": _stay_up("8"),
    "9": _stay_up("9"),
    "0": _stay_up("0"),
}


def scenario_for(destination: str) -> Scenario:
    """The scenario of a destination number: its last digit decides."""
    for char in reversed(destination):
        if char in SCENARIOS:
            return SCENARIOS[char]
    return SCENARIOS["0"]
