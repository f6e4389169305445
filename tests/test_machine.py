"""The call state machine, as tables."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from dialgw.calls.machine import (
    STATUSES,
    CallSignal,
    Signal,
    Transition,
    next_transition,
    signal_for_call_state,
    signal_for_channel_event,
    signal_for_job_result,
)

S = Signal


class NextTransitionTests(SynchronousTestCase):
    TABLE = [
        ("dialing", CallSignal(S.PROGRESS), "ringing"),
        ("dialing", CallSignal(S.PROGRESS_MEDIA), "early_media"),
        ("dialing", CallSignal(S.ANSWER), "answered"),
        ("dialing", CallSignal(S.HANGUP, "USER_BUSY"), "ended"),
        ("dialing", CallSignal(S.ORIGINATE_FAILED, "CALL_REJECTED"), "ended"),
        ("dialing", CallSignal(S.ORIGINATE_OK), None),
        ("ringing", CallSignal(S.PROGRESS), None),
        ("ringing", CallSignal(S.PROGRESS_MEDIA), "early_media"),
        ("ringing", CallSignal(S.ANSWER), "answered"),
        ("early_media", CallSignal(S.PROGRESS), None),
        ("early_media", CallSignal(S.ORIGINATE_OK), None),
        ("early_media", CallSignal(S.ANSWER), "answered"),
        ("answered", CallSignal(S.PROGRESS_MEDIA), None),
        ("answered", CallSignal(S.ANSWER), None),
        ("answered", CallSignal(S.HANGUP, "NORMAL_CLEARING"), "ended"),
        ("ended", CallSignal(S.HANGUP, "NORMAL_CLEARING"), None),
        ("ended", CallSignal(S.ANSWER), None),
        ("ended", CallSignal(S.ORIGINATE_FAILED, "NO_ANSWER"), None),
    ]

    def test_table(self) -> None:
        for current, signal, expected in self.TABLE:
            result = next_transition(current, signal)
            got = None if result is None else result.to_status
            self.assertEqual(got, expected, f"{current} + {signal}")

    def test_hangup_carries_its_cause(self) -> None:
        self.assertEqual(
            next_transition("ringing", CallSignal(S.HANGUP, "NO_ANSWER")),
            Transition("ringing", "ended", "NO_ANSWER"),
        )

    def test_hangup_without_cause_is_unspecified(self) -> None:
        self.assertEqual(
            next_transition("answered", CallSignal(S.HANGUP)).hangup_cause, "NORMAL_UNSPECIFIED"
        )

    def test_never_backwards_never_twice(self) -> None:
        for current in STATUSES:
            for signal in Signal:
                result = next_transition(current, CallSignal(signal, "X"))
                if result is not None:
                    self.assertGreater(
                        STATUSES.index(result.to_status), STATUSES.index(current), (current, signal)
                    )


class SignalTests(SynchronousTestCase):
    def test_job_results(self) -> None:
        table = [
            ("+OK 5d0c9a8e-2f61-4b1f-9c3e-7a4b2e1d0f33\n", CallSignal(S.ORIGINATE_OK)),
            ("-ERR USER_BUSY\n", CallSignal(S.ORIGINATE_FAILED, "USER_BUSY")),
            ("-ERR NO_ANSWER", CallSignal(S.ORIGINATE_FAILED, "NO_ANSWER")),
            ("-ERR originate Command not found!\n", CallSignal(S.ORIGINATE_FAILED, "NORMAL_UNSPECIFIED")),
            ("-USAGE: <call url> ...\n", CallSignal(S.ORIGINATE_FAILED, "INVALID_NUMBER_FORMAT")),
            ("", None),
        ]
        for body, expected in table:
            self.assertEqual(signal_for_job_result(body), expected, body)

    def test_channel_events(self) -> None:
        table = [
            ("CHANNEL_PROGRESS", None, CallSignal(S.PROGRESS)),
            ("CHANNEL_PROGRESS_MEDIA", None, CallSignal(S.PROGRESS_MEDIA)),
            ("CHANNEL_ANSWER", None, CallSignal(S.ANSWER)),
            ("CHANNEL_HANGUP_COMPLETE", "USER_BUSY", CallSignal(S.HANGUP, "USER_BUSY")),
            ("CHANNEL_HANGUP_COMPLETE", "bogus value", CallSignal(S.HANGUP, "NORMAL_UNSPECIFIED")),
            ("CHANNEL_CALLSTATE", None, None),
            ("CHANNEL_STATE", None, None),
            ("CHANNEL_PARK", None, None),
        ]
        for name, cause, expected in table:
            self.assertEqual(signal_for_channel_event(name, cause), expected, name)

    def test_call_states(self) -> None:
        table = [
            ("RINGING", "ringing", CallSignal(S.PROGRESS)),
            ("EARLY", "early", CallSignal(S.PROGRESS_MEDIA)),
            ("ACTIVE", "answered", CallSignal(S.ANSWER)),
            ("RINGING", "answered", CallSignal(S.ANSWER)),
            ("DOWN", "", None),
        ]
        for state, answer, expected in table:
            self.assertEqual(signal_for_call_state(state, answer), expected, state)
