"""Standard Webhooks signatures, checked by the standardwebhooks library."""

from __future__ import annotations

import base64
import json
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from twisted.trial.unittest import SynchronousTestCase

from dialgw.webhooks.signing import sign, signature_header, webhook_headers

CURRENT = "whsec_" + base64.b64encode(b"current key of thirty-two bytes!").decode()
PREVIOUS = "whsec_" + base64.b64encode(b"previous key, before rotation").decode()
OTHER = "whsec_" + base64.b64encode(b"somebody else's key").decode()
BODY = b'{"id":"evt_1","event":"call.answered","metadata":{"name":"\xd7\x93\xd7\x95\xd7\x93"}}'


def headers_for(secrets, body=BODY, event_id="evt_1", timestamp=None):
    return webhook_headers(
        secrets=secrets,
        event_id=event_id,
        event_name="call.answered",
        timestamp=int(time.time()) if timestamp is None else timestamp,
        body=body,
        user_agent="dialgw/0.1.0",
    )


class SignTests(SynchronousTestCase):
    def test_known_vector(self):
        # The example from the Standard Webhooks specification.
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        body = b'{"test": 2432232314}'
        self.assertEqual(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        )

    def test_signature_is_padded_standard_base64(self):
        value = sign(CURRENT, "evt_1", 1700000000, BODY)
        version, encoded = value.split(",")
        self.assertEqual(version, "v1")
        self.assertEqual(len(base64.b64decode(encoded, validate=True)), 32)
        self.assertTrue(encoded.endswith("="))

    def test_unpadded_key_is_accepted(self):
        padded = "whsec_" + base64.b64encode(b"12345").decode()
        self.assertTrue(padded.endswith("="))
        self.assertEqual(
            sign(padded, "evt_1", 1, b"{}"), sign(padded.rstrip("="), "evt_1", 1, b"{}")
        )

    def test_bad_secrets_raise_value_error(self):
        for name, secret in [
            ("no prefix", base64.b64encode(b"key").decode()),
            ("empty key", "whsec_"),
            ("not base64", "whsec_not*base64!"),
            ("wrong prefix", "whsek_" + base64.b64encode(b"key").decode()),
        ]:
            with self.subTest(name):
                self.assertRaises(ValueError, sign, secret, "evt_1", 1, b"{}")

    def test_no_secrets_raise_value_error(self):
        self.assertRaises(ValueError, signature_header, [], "evt_1", 1, b"{}")
        self.assertRaises(ValueError, signature_header, CURRENT, "evt_1", 1, b"{}")

    def test_rotation_signs_with_current_first(self):
        value = signature_header([CURRENT, PREVIOUS], "evt_1", 5, BODY)
        self.assertEqual(
            value.split(" "),
            [sign(CURRENT, "evt_1", 5, BODY), sign(PREVIOUS, "evt_1", 5, BODY)],
        )


class HeaderTests(SynchronousTestCase):
    def test_headers(self):
        headers = headers_for([CURRENT], timestamp=1700000000)
        self.assertEqual(
            headers,
            {
                "Content-Type": "application/json",
                "User-Agent": "dialgw/0.1.0",
                "webhook-id": "evt_1",
                "webhook-timestamp": "1700000000",
                "webhook-signature": sign(CURRENT, "evt_1", 1700000000, BODY),
                "X-Dialgw-Event": "call.answered",
            },
        )

    def test_library_verifies_our_headers(self):
        parsed = Webhook(CURRENT).verify(BODY, headers_for([CURRENT]))
        self.assertEqual(parsed, json.loads(BODY))

    def test_either_secret_of_a_rotation_verifies(self):
        headers = headers_for([CURRENT, PREVIOUS])
        for secret in (CURRENT, PREVIOUS):
            with self.subTest(secret):
                Webhook(secret).verify(BODY, headers)

    def test_library_rejects_tampering_other_secret_and_stale_timestamp(self):
        fresh = headers_for([CURRENT])
        cases = [
            ("tampered body", CURRENT, BODY.replace(b"answered", b"hangup"), fresh),
            ("other secret", OTHER, BODY, fresh),
            ("other id", CURRENT, BODY, {**fresh, "webhook-id": "evt_2"}),
            ("stale", CURRENT, BODY, headers_for([CURRENT], timestamp=int(time.time()) - 600)),
            ("future", CURRENT, BODY, headers_for([CURRENT], timestamp=int(time.time()) + 600)),
        ]
        for name, secret, body, headers in cases:
            with self.subTest(name):
                self.assertRaises(WebhookVerificationError, Webhook(secret).verify, body, headers)

    @settings(max_examples=200, deadline=None)
    @given(
        text=st.text(),
        event_id=st.text(
            alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1
        ),
        key=st.binary(min_size=1, max_size=64),
    )
    def test_library_verifies_any_body_and_id(self, text, event_id, key):
        body = json.dumps(text, ensure_ascii=False).encode("utf-8")
        secret = "whsec_" + base64.b64encode(key).decode()
        Webhook(secret).verify(body, headers_for([secret, OTHER], body=body, event_id=event_id))
