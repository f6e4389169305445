"""The webhook body: key order, metadata echoed byte-for-byte, hangup fields."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dialgw.calls.machine import EVENT_FOR_STATUS
from dialgw.store.records import SessionEvent
from dialgw.webhooks.payload import webhook_body

BASE_KEYS = [
    "id", "event", "session_uuid", "sequence", "occurred_at", "status", "to", "from", "metadata",
]


def make_event(status="answered", **changes) -> SessionEvent:
    fields = dict(
        event_id="evt_01",
        session_uuid="3f0c1e9a-0d1b-4d59-9a53-5e1f2c7d8b10",
        sequence=4,
        event=EVENT_FOR_STATUS[status],
        status=status,
        occurred_at=1795701600.123,
        hangup_cause=None,
        duration_sec=None,
        delivery_state="pending",
        attempts=0,
        last_error=None,
        next_attempt_at=None,
        delivered_at=None,
    )
    fields.update(changes)
    return SessionEvent(**fields)


def body_of(event, metadata_json="{}") -> bytes:
    return webhook_body(
        event, to_number="0527121102", from_number="0721234567", metadata_json=metadata_json
    )


class WebhookBodyTests(SynchronousTestCase):
    def test_answered_body(self):
        self.assertEqual(
            body_of(make_event(), '{"crm_id":42}'),
            b'{"id":"evt_01","event":"call.answered",'
            b'"session_uuid":"3f0c1e9a-0d1b-4d59-9a53-5e1f2c7d8b10","sequence":4,'
            b'"occurred_at":"2026-11-26T14:00:00.123Z","status":"answered",'
            b'"to":"0527121102","from":"0721234567","metadata":{"crm_id":42}}',
        )

    def test_key_order_for_every_event(self):
        for status, name in EVENT_FOR_STATUS.items():
            with self.subTest(status):
                event = make_event(status, hangup_cause="NORMAL_CLEARING", duration_sec=7)
                keys = list(json.loads(body_of(event)))
                expected = BASE_KEYS + (
                    ["hangup_cause", "duration_sec"] if name == "call.hangup" else []
                )
                self.assertEqual(keys, expected)

    def test_hangup_fields_only_on_hangup(self):
        hangup = json.loads(
            body_of(make_event("ended", hangup_cause="USER_BUSY", duration_sec=0))
        )
        self.assertEqual(
            (hangup["event"], hangup["hangup_cause"], hangup["duration_sec"]),
            ("call.hangup", "USER_BUSY", 0),
        )
        # Fields present on a non-hangup record do not leak into its body.
        answered = json.loads(
            body_of(make_event("answered", hangup_cause="X", duration_sec=3))
        )
        self.assertNotIn("hangup_cause", answered)
        self.assertNotIn("duration_sec", answered)

    def test_never_answered_hangup_has_zero_duration(self):
        body = json.loads(body_of(make_event("ended", hangup_cause="NO_ANSWER")))
        self.assertEqual(body["duration_sec"], 0)

    def test_unicode_and_nested_metadata_echoed_byte_for_byte(self):
        metadata_json = (
            '{"שם":"דוד","nested":{"list":[1,2.50,{"x":null}],"emoji":"📞"},'
            '"esc":"\\u00e9", "spaced" : true}'
        )
        body = body_of(make_event(), metadata_json)
        self.assertIn(b'"metadata":' + metadata_json.encode("utf-8") + b"}", body)
        self.assertEqual(json.loads(body)["metadata"], json.loads(metadata_json))

    def test_compact_with_unicode_unescaped(self):
        body = body_of(make_event(), "{}")
        self.assertNotIn(b" ", body)
        body = webhook_body(
            make_event(event_id="אירוע"), to_number="1", from_number="2", metadata_json="{}"
        )
        self.assertIn('"id":"אירוע"'.encode(), body)

    def test_empty_metadata_text_is_refused(self):
        self.assertRaises(ValueError, body_of, make_event(), "")

    @settings(max_examples=200, deadline=None)
    @given(
        metadata=st.dictionaries(
            st.text(),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(),
                lambda inner: st.lists(inner, max_size=3)
                | st.dictionaries(st.text(), inner, max_size=3),
                max_leaves=10,
            ),
            max_size=5,
        ),
        sequence=st.integers(min_value=1, max_value=10**6),
    )
    def test_any_metadata_round_trips(self, metadata, sequence):
        # The API stores metadata compactly with ensure_ascii=False.
        metadata_json = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
        body = body_of(make_event(sequence=sequence), metadata_json)
        parsed = json.loads(body)
        self.assertEqual(parsed["metadata"], metadata)
        self.assertEqual(parsed["sequence"], sequence)
        self.assertTrue(body.endswith(b'"metadata":' + metadata_json.encode("utf-8") + b"}"))
