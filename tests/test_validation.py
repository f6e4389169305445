"""POST /dial body validation: every rule, code and field."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dialgw.api.errors import ApiError
from dialgw.api.validation import (
    check_content_type,
    check_idempotency_key,
    validate_dial,
)

GOOD = {"to": "0527121102", "from": "0721234567"}


def body(**fields) -> bytes:
    merged = {**GOOD, **fields}
    return json.dumps({k: v for k, v in merged.items() if v is not ...}).encode()


class ValidationTableTests(SynchronousTestCase):
    # (case name, raw body, status, error code, field)
    CASES = [
        ("not json", b"{to:", 400, "invalid_json", None),
        ("empty body", b"", 400, "invalid_json", None),
        ("array", b"[]", 400, "invalid_json", None),
        ("string", b'"x"', 400, "invalid_json", None),
        ("null", b"null", 400, "invalid_json", None),
        ("invalid utf-8", b'{"to": "\xff"}', 400, "invalid_json", None),
        ("NaN", b'{"to": "0527121102", "from": "0721234567", "timeout_sec": NaN}', 400, "invalid_json", None),
        ("huge float", b'{"to": "0527121102", "from": "0721234567", "metadata": {"x": 1e999}}', 400, "invalid_json", None),
        ("duplicate key", b'{"to": "0527121102", "to": "0527121103", "from": "0721234567"}', 400, "invalid_json", None),
        ("deep nesting", b"[" * 60000, 400, "invalid_json", None),
        ("too large", b" " * (64 * 1024 + 1), 413, "body_too_large", None),
        ("missing to", body(to=...), 400, "missing_field", "to"),
        ("missing from", body(**{"from": ...}), 400, "missing_field", "from"),
        ("unknown field", body(timeout=30), 400, "invalid_field", "timeout"),
        ("to not a string", body(to=527121102), 400, "invalid_field", "to"),
        ("from null", body(**{"from": None}), 400, "invalid_field", "from"),
        ("to invalid", body(to="100"), 400, "invalid_number", "to"),
        ("to with +972", body(to="+972527121102"), 400, "invalid_number", "to"),
        ("from invalid", body(**{"from": "0561234567"}), 400, "invalid_number", "from"),
        ("timeout bool", body(timeout_sec=True), 400, "invalid_field", "timeout_sec"),
        ("timeout float", body(timeout_sec=30.5), 400, "invalid_field", "timeout_sec"),
        ("timeout 30.0", body(timeout_sec=30.0), 400, "invalid_field", "timeout_sec"),
        ("timeout string", body(timeout_sec="30"), 400, "invalid_field", "timeout_sec"),
        ("timeout 0", body(timeout_sec=0), 400, "out_of_range", "timeout_sec"),
        ("timeout 301", body(timeout_sec=301), 400, "out_of_range", "timeout_sec"),
        ("duration 0", body(max_duration_sec=0), 400, "out_of_range", "max_duration_sec"),
        ("duration 14401", body(max_duration_sec=14401), 400, "out_of_range", "max_duration_sec"),
        ("duration bool", body(max_duration_sec=False), 400, "invalid_field", "max_duration_sec"),
        ("metadata list", body(metadata=[1]), 400, "invalid_field", "metadata"),
        ("metadata string", body(metadata="x"), 400, "invalid_field", "metadata"),
        ("metadata too big", body(metadata={"x": "a" * 4100}), 400, "out_of_range", "metadata"),
    ]

    def test_table(self) -> None:
        for name, raw, status, code, field in self.CASES:
            with self.assertRaises(ApiError, msg=name) as caught:
                validate_dial(raw)
            error = caught.exception
            self.assertEqual((error.status, error.code, error.field), (status, code, field), name)
            self.assertIsInstance(error.message, str, name)

    def test_defaults(self) -> None:
        dial = validate_dial(body())
        self.assertEqual((dial.timeout_sec, dial.max_duration_sec, dial.metadata_json), (30, 3600, "{}"))

    def test_bounds_are_inclusive(self) -> None:
        for timeout, duration in [(1, 1), (300, 14400)]:
            dial = validate_dial(body(timeout_sec=timeout, max_duration_sec=duration))
            self.assertEqual((dial.timeout_sec, dial.max_duration_sec), (timeout, duration))

    def test_metadata_is_kept_with_unicode_and_nesting(self) -> None:
        metadata = {"name": "שלום ☎", "nested": {"a": [1, 2.5, None, True]}, "z": "\u2028"}
        dial = validate_dial(body(metadata=metadata))
        self.assertEqual(json.loads(dial.metadata_json), metadata)
        self.assertIn("שלום", dial.metadata_json)

    def test_metadata_of_exactly_4_kib_is_accepted(self) -> None:
        overhead = len('{"x":""}')
        dial = validate_dial(body(metadata={"x": "a" * (4096 - overhead)}))
        self.assertEqual(len(dial.metadata_json.encode()), 4096)

    def test_same_dial_spelled_differently_hashes_the_same(self) -> None:
        a = validate_dial(b'{"to":"0527121102","from":"0721234567","metadata":{"a":1,"b":2}}')
        b = validate_dial(
            b'{"metadata":{"b":2,"a":1},"from":"0721234567","to":"0527121102","timeout_sec":30}'
        )
        c = validate_dial(b'{"to":"0527121102","from":"0721234567","timeout_sec":31}')
        self.assertEqual(a.request_hash, b.request_hash)
        self.assertNotEqual(a.request_hash, c.request_hash)


class HeaderTests(SynchronousTestCase):
    def test_content_types(self) -> None:
        for accepted in ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"]:
            check_content_type(accepted)
        for refused in [None, "", "text/plain", "application/jsonx", "application/json; charset=latin-1", "multipart/form-data"]:
            with self.assertRaises(ApiError, msg=refused) as caught:
                check_content_type(refused)
            self.assertEqual((caught.exception.status, caught.exception.code), (415, "unsupported_media_type"))

    def test_idempotency_keys(self) -> None:
        self.assertIsNone(check_idempotency_key(None))
        self.assertEqual(check_idempotency_key("k" * 255), "k" * 255)
        for refused in ["", "k" * 256, "a\nb", "a\rb", "\x00", "ключ", "a\u2028b", "a\tb"]:
            with self.assertRaises(ApiError, msg=repr(refused)) as caught:
                check_idempotency_key(refused)
            self.assertEqual(caught.exception.field, "Idempotency-Key")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=10,
)


class PropertyTests(SynchronousTestCase):
    @given(st.dictionaries(st.text(), json_values, max_size=6))
    def test_any_object_is_accepted_or_refused_cleanly(self, obj) -> None:
        raw = json.dumps(obj).encode()
        try:
            dial = validate_dial(raw)
        except ApiError as error:
            self.assertIn(error.status, (400, 413))
            self.assertTrue(error.code and error.message)
        else:
            self.assertTrue(set(obj) <= {"to", "from", "timeout_sec", "max_duration_sec", "metadata"})
            self.assertEqual(dial.to, obj["to"])

    @given(st.binary(max_size=200))
    def test_any_bytes_are_accepted_or_refused_cleanly(self, raw: bytes) -> None:
        try:
            validate_dial(raw)
        except ApiError as error:
            self.assertEqual(error.status, 400)

    @given(st.integers(min_value=-10**6, max_value=10**6))
    def test_timeout_range(self, value: int) -> None:
        try:
            dial = validate_dial(body(timeout_sec=value))
        except ApiError as error:
            self.assertFalse(1 <= value <= 300)
            self.assertEqual(error.code, "out_of_range")
        else:
            self.assertEqual(dial.timeout_sec, value)
            self.assertTrue(1 <= value <= 300)

    @given(json_values)
    def test_metadata_round_trips(self, value) -> None:
        metadata = {"v": value}
        size = len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode())
        try:
            dial = validate_dial(body(metadata=metadata))
        except ApiError as error:
            self.assertEqual((error.code, size > 4096), ("out_of_range", True))
        else:
            self.assertEqual(json.loads(dial.metadata_json), metadata)


class SurrogateTests(SynchronousTestCase):
    def test_lone_surrogates_are_refused(self) -> None:
        for raw in [
            b'{"to":"0527121102","from":"0721234567","metadata":{"x":"\\ud800"}}',
            b'{"to":"0527121102","from":"0721234567","\\udfff":1}',
        ]:
            with self.assertRaises(ApiError, msg=raw) as caught:
                validate_dial(raw)
            self.assertEqual(caught.exception.code, "invalid_json")

    def test_paired_surrogates_are_text(self) -> None:
        dial = validate_dial(b'{"to":"0527121102","from":"0721234567","metadata":{"x":"\\ud83d\\ude00"}}')
        self.assertIn("\U0001F600", dial.metadata_json)
