"""The originate command: only validated values reach FreeSWITCH."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dialgw.calls.originate import UnsafeOriginate, originate_command

CHANNEL = "f47ac10b-58cc-4372-a567-0e02b2c3d479"
ARGS = dict(
    session_uuid=f"acW68-{CHANNEL}",
    channel_uuid=CHANNEL,
    node_id="acW68",
    to="0527121102",
    from_="0721234567",
    timeout_sec=30,
    max_duration_sec=3600,
    dial_string="sofia/gateway/trunk/{to}",
)


class OriginateCommandTests(SynchronousTestCase):
    def test_command(self) -> None:
        self.assertEqual(
            originate_command(**ARGS),
            "originate {origination_uuid=f47ac10b-58cc-4372-a567-0e02b2c3d479,"
            "origination_caller_id_number=0721234567,ignore_early_media=true,"
            "originate_timeout=30,"
            "execute_on_answer='sched_hangup +3600 ALLOTTED_TIMEOUT',"
            "dialgw_session=acW68-f47ac10b-58cc-4372-a567-0e02b2c3d479,dialgw_node=acW68}"
            "sofia/gateway/trunk/0527121102 &park()",
        )

    def test_unsafe_values_are_refused(self) -> None:
        bad = [
            ("to", "0527121102\n\napi system rm"),
            ("to", "0527121102,execute_on_answer=system"),
            ("from_", "0721234567}x"),
            ("from_", "0721234567'"),
            ("timeout_sec", True),
            ("timeout_sec", "30"),
            ("timeout_sec", 0),
            ("max_duration_sec", 14401),
            ("channel_uuid", CHANNEL.upper()),
            ("session_uuid", "acW68-" + CHANNEL + "\n"),
            ("node_id", "ac,68"),
            ("dial_string", "sofia/gateway/trunk/{to} &system(x)"),
            ("dial_string", "sofia/gateway/{to}/{to}"),
            ("dial_string", "sofia/gateway/trunk/"),
        ]
        for name, value in bad:
            with self.assertRaises(UnsafeOriginate, msg=f"{name}={value!r}"):
                originate_command(**{**ARGS, name: value})

    @given(st.text(max_size=20), st.text(max_size=20))
    def test_no_control_or_block_characters_from_any_input(self, to: str, from_: str) -> None:
        try:
            command = originate_command(**{**ARGS, "to": to, "from_": from_})
        except UnsafeOriginate:
            return
        self.assertTrue(to.isdigit() and to.isascii() and from_.isdigit() and from_.isascii())
        for char in "\r\n\x00":
            self.assertNotIn(char, command)
        self.assertEqual(command.count("{"), 1)
        self.assertEqual(command.count("}"), 1)

    def test_fresh_uuids_pass(self) -> None:
        channel = str(uuid.uuid4())
        command = originate_command(**{**ARGS, "channel_uuid": channel, "session_uuid": f"acW68-{channel}"})
        self.assertIn(f"origination_uuid={channel},", command)
