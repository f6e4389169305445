"""Framing and event decoding against real FreeSWITCH captures."""

from __future__ import annotations

from collections import Counter
from unittest import SkipTest

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from dialgw.esl.frames import (
    MAX_BODY,
    MAX_HEADER_BLOCK,
    ESLProtocolError,
    Event,
    Frame,
    FrameParser,
    parse_event,
)

from . import esl_fixtures as fx

# Frames per content type in each capture (counted independently with grep).
EXPECTED_COUNTS = {
    "auth_ok": {"auth/request": 1, "command/reply": 1},
    "auth_badpw": {"auth/request": 1, "command/reply": 1, "text/disconnect-notice": 1},
    "noauth_cmd": {"auth/request": 1, "command/reply": 1},
    "api_misc": {"auth/request": 1, "command/reply": 13, "api/response": 8, "text/disconnect-notice": 1},
    "heartbeat": {"auth/request": 1, "command/reply": 2, "text/event-plain": 2},
    "shutdown_listener": {
        "auth/request": 1,
        "command/reply": 2,
        "text/event-plain": 31,
        "text/disconnect-notice": 1,
    },
    "call_answered": {"auth/request": 1, "command/reply": 3, "text/event-plain": 55},
    "call_busy": {"auth/request": 1, "command/reply": 3, "text/event-plain": 34},
    "call_noanswer": {"auth/request": 1, "command/reply": 3, "text/event-plain": 39},
    "call_earlymedia": {"auth/request": 1, "command/reply": 3, "text/event-plain": 58},
    "call_rejected": {"auth/request": 1, "command/reply": 3, "text/event-plain": 34},
    "call_max_duration": {"auth/request": 1, "command/reply": 3, "text/event-plain": 50},
    "call_uuid_kill": {
        "auth/request": 1,
        "command/reply": 3,
        "api/response": 4,
        "text/event-plain": 52,
    },
}

# The BACKGROUND_JOB result of each originate capture.
JOB_RESULTS = {
    "call_answered": b"+OK 310e9833-09be-451c-84f7-028185f505e8\n",
    "call_busy": b"-ERR USER_BUSY\n",
    "call_noanswer": b"-ERR NO_ANSWER\n",
    "call_earlymedia": b"+OK 9650c1e0-2e42-4438-9d8a-464da393d8ef\n",
    "call_rejected": b"-ERR CALL_REJECTED\n",
    "call_max_duration": b"+OK 95f4445d-6715-4a34-9c66-35480837b5cf\n",
    "call_uuid_kill": b"+OK e32502e5-260a-426c-9180-d44c83fecdad\n",
}

GOODBYE = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"


def parse_all(data: bytes) -> list[Frame]:
    return FrameParser().feed(data)


def parse_chunks(chunks: list[bytes]) -> list[Frame]:
    parser = FrameParser()
    frames: list[Frame] = []
    for chunk in chunks:
        frames.extend(parser.feed(chunk))
    if parser.buffered:
        raise AssertionError(f"{parser.buffered} bytes left over")
    return frames


def events(name: str) -> list[Event]:
    return [parse_event(f) for f in parse_all(fx.raw(name)) if f.content_type == "text/event-plain"]


class FixtureFramingTests(SynchronousTestCase):
    def test_every_capture_is_listed(self) -> None:
        self.assertEqual(sorted(EXPECTED_COUNTS), fx.capture_names())

    def test_frame_counts_per_content_type(self) -> None:
        for name, expected in EXPECTED_COUNTS.items():
            frames = parse_all(fx.raw(name))
            counts = Counter(f.content_type for f in frames)
            self.assertEqual(dict(counts), expected, name)

    def test_frames_reserialize_to_the_capture(self) -> None:
        # Every byte is accounted for: headers, blank line, exact bodies.
        for name in EXPECTED_COUNTS:
            data = fx.raw(name)
            rebuilt = b"".join(
                b"".join(f"{k}: {v}\n".encode() for k, v in f.headers.items()) + b"\n" + f.body
                for f in parse_all(data)
            )
            self.assertEqual(len(rebuilt), len(data), name)

    def test_real_tcp_chunking_gives_the_same_frames(self) -> None:
        for name in EXPECTED_COUNTS:
            chunks = fx.recv_chunks(name)
            self.assertEqual(b"".join(chunks), fx.raw(name), name)
            self.assertEqual(parse_chunks(chunks), parse_all(fx.raw(name)), name)

    def test_one_byte_at_a_time_full_call(self) -> None:
        for name in ("call_answered", "call_busy"):
            data = fx.raw(name)
            one_by_one = parse_chunks([data[i : i + 1] for i in range(len(data))])
            self.assertEqual(one_by_one, parse_all(data), name)

    def test_every_two_piece_split(self) -> None:
        for name in ("auth_badpw", "heartbeat", "api_misc"):
            data = fx.raw(name)
            expected = parse_all(data)
            for i in range(len(data) + 1):
                self.assertEqual(parse_chunks([data[:i], data[i:]]), expected, f"{name} split at {i}")

    def test_three_piece_splits_around_a_nested_body(self) -> None:
        data = fx.raw("call_busy")
        job = data.find(b"-ERR USER_BUSY\n")
        expected = parse_all(data)
        for i in range(job - 40, job + 20):
            for j in range(i, job + 25, 7):
                self.assertEqual(parse_chunks([data[:i], data[i:j], data[j:]]), expected, (i, j))


class FixtureContentTests(SynchronousTestCase):
    def test_auth_frames(self) -> None:
        frames = parse_all(fx.raw("auth_badpw"))
        self.assertEqual(frames[0], Frame({"Content-Type": "auth/request"}, b""))
        self.assertEqual(frames[1].headers["Reply-Text"], "-ERR invalid")
        self.assertEqual(frames[2].content_type, "text/disconnect-notice")
        self.assertEqual(frames[2].body, GOODBYE)
        self.assertEqual(len(frames[2].body), 67)

    def test_shutdown_disconnect_notice(self) -> None:
        frames = parse_all(fx.raw("shutdown_listener"))
        self.assertEqual(frames[-1].content_type, "text/disconnect-notice")
        self.assertEqual(frames[-1].body, b"The system is being shut down.\n")
        self.assertIn("SHUTDOWN", [e.name for e in events("shutdown_listener")])

    def test_api_responses(self) -> None:
        frames = parse_all(fx.raw("api_misc"))
        bodies = [f.body for f in frames if f.content_type == "api/response"]
        self.assertEqual(bodies[2], b'{"row_count": 0}\n')
        self.assertEqual(bodies[5], b"false")  # uuid_exists: no trailing newline
        self.assertEqual(bodies[6], b"-ERR No such channel!\n")
        self.assertEqual(bodies[7], b"-ERR nosuchcommand Command not found!\n")
        replies = [f.headers["Reply-Text"] for f in frames if f.content_type == "command/reply"]
        self.assertEqual(replies[1], "+OK Job-UUID: f97b3de9-5322-42e2-b57e-d89c39e3489e")
        self.assertEqual(replies[-1], "+OK bye")
        bgapi = [f for f in frames if "Job-UUID" in f.headers][0]
        self.assertEqual(bgapi.headers["Job-UUID"], "f97b3de9-5322-42e2-b57e-d89c39e3489e")

    def test_background_job_nested_bodies(self) -> None:
        for name, result in JOB_RESULTS.items():
            jobs = [e for e in events(name) if e.name == "BACKGROUND_JOB"]
            self.assertEqual(len(jobs), 1, name)
            self.assertEqual(jobs[0].body, result, name)
            self.assertEqual(jobs[0].get("Job-Command"), "originate", name)
            self.assertIsNotNone(jobs[0].job_uuid, name)
            self.assertTrue(jobs[0].get("Job-Command-Arg", "").startswith("{origination_uuid="), name)

    def test_events_without_nested_body(self) -> None:
        for event in events("call_answered"):
            if event.name != "BACKGROUND_JOB":
                self.assertEqual(event.body, b"", event.name)

    def test_hangup_cause_repeats_in_hangup_complete(self) -> None:
        ours = "0fd6027c-8cb7-48f4-92d6-cf20b3d67630"
        complete = [e for e in events("call_busy") if e.name == "CHANNEL_HANGUP_COMPLETE" and e.unique_id == ours]
        self.assertEqual(len(complete), 1)
        self.assertEqual(complete[0].get_all("Hangup-Cause"), ["USER_BUSY", "USER_BUSY"])
        self.assertEqual(complete[0].get("Hangup-Cause"), "USER_BUSY")
        self.assertEqual(complete[0].get("variable_dialgw_session"), "test1")

    def test_answered_call_sequence_of_our_leg(self) -> None:
        ours = "310e9833-09be-451c-84f7-028185f505e8"
        names = [e.name for e in events("call_answered") if e.unique_id == ours]
        for expected in (
            "CHANNEL_OUTGOING",
            "CHANNEL_CREATE",
            "CHANNEL_ORIGINATE",
            "CHANNEL_PROGRESS",
            "CHANNEL_ANSWER",
            "CHANNEL_HANGUP",
            "CHANNEL_HANGUP_COMPLETE",
            "CHANNEL_DESTROY",
        ):
            self.assertIn(expected, names)
        answer = [e for e in events("call_answered") if e.name == "CHANNEL_ANSWER" and e.unique_id == ours][0]
        self.assertEqual(answer.get("Answer-State"), "answered")
        self.assertEqual(answer.get("Call-Direction"), "outbound")
        self.assertEqual(answer.get("Caller-Caller-ID-Number"), "0721234567")

    def test_values_are_url_decoded(self) -> None:
        event = events("heartbeat")[0]
        self.assertEqual(event.get("FreeSWITCH-IPv6"), "fd00::2")
        self.assertEqual(event.get("Event-Date-Local"), "2026-11-26 14:26:39")
        self.assertEqual(event.get("Event-Info"), "System Ready")
        channel = [e for e in events("call_answered") if e.name == "CHANNEL_CREATE"][0]
        self.assertEqual(channel.get("Channel-Name"), "sofia/caller/0521000001@127.0.0.1:5080")

    def test_heartbeat_fields(self) -> None:
        beats = events("heartbeat")
        self.assertEqual([e.name for e in beats], ["HEARTBEAT", "HEARTBEAT"])
        self.assertEqual(beats[0].get("Session-Count"), "0")
        self.assertEqual(beats[0].get("Max-Sessions"), "1000")
        self.assertEqual(beats[0].get("Core-UUID"), "2d83c308-d6e3-4357-b367-2e32aa0f39f0")
        self.assertEqual(beats[0].get("FreeSWITCH-Version"), "1.11.3-dev~64bit")
        self.assertEqual(beats[0].get("Idle-CPU"), "98.466667")

    def test_missing_header_gives_default(self) -> None:
        event = events("heartbeat")[0]
        self.assertIsNone(event.get("Unique-ID"))
        self.assertIsNone(event.unique_id)
        self.assertEqual(event.get("No-Such-Header", "x"), "x")
        self.assertEqual(event.get_all("No-Such-Header"), [])

    def test_headers_dict(self) -> None:
        event = events("heartbeat")[0]
        headers = event.headers()
        self.assertEqual(headers["Event-Name"], "HEARTBEAT")
        self.assertEqual(headers["Event-Info"], "System Ready")
        self.assertEqual(len(headers), 27)

    def test_name_prefix_is_not_a_match(self) -> None:
        # "Name" must not match "Name-Suffix" or "Caller-Name".
        event = Event(b"Caller-Unique-ID: a\nUnique-ID-X: b\nUnique-ID: c\n\n")
        self.assertEqual(event.unique_id, "c")
        self.assertEqual(Event(b"Unique-ID-X: b\n\n").unique_id, None)


class ForgeryTests(SynchronousTestCase):
    def test_encoded_newline_cannot_forge_a_header(self) -> None:
        raw = (
            b"Event-Name: CHANNEL_ANSWER\n"
            b"Unique-ID: 5d0c9a8e-2f61-4b1f-9c3e-7a4b2e1d0f33\n"
            b"Caller-Caller-ID-Name: Mallory%0AHangup-Cause%3A%20NORMAL_CLEARING\n"
            b"variable_x: a%0AUnique-ID%3A%20evil%0A%0AContent-Length%3A%205\n\n"
        )
        event = Event(raw)
        self.assertEqual(event.get("Caller-Caller-ID-Name"), "Mallory\nHangup-Cause: NORMAL_CLEARING")
        self.assertIsNone(event.get("Hangup-Cause"))
        self.assertEqual(event.get_all("Hangup-Cause"), [])
        self.assertEqual(event.unique_id, "5d0c9a8e-2f61-4b1f-9c3e-7a4b2e1d0f33")
        self.assertEqual(event.get_all("Unique-ID"), ["5d0c9a8e-2f61-4b1f-9c3e-7a4b2e1d0f33"])
        self.assertEqual(event.body, b"")
        self.assertNotIn("Hangup-Cause", event.headers())

    def test_forged_header_through_the_parser(self) -> None:
        body = b"Event-Name: CHANNEL_HANGUP\nCaller-Caller-ID-Name: Mallory%0AHangup-Cause%3A%20NORMAL_CLEARING\nHangup-Cause: USER_BUSY\n\n"
        wire = b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(body), body)
        (frame,) = parse_all(wire)
        event = parse_event(frame)
        self.assertEqual(event.get_all("Hangup-Cause"), ["USER_BUSY"])

    def test_non_utf8_value_is_replaced(self) -> None:
        event = Event(b"Event-Name: X\nCaller-Caller-ID-Name: caf%E9\n\n")
        self.assertEqual(event.get("Caller-Caller-ID-Name"), "caf\ufffd")


class ParseEventTests(SynchronousTestCase):
    def test_non_event_frame_is_refused(self) -> None:
        self.assertRaises(ESLProtocolError, parse_event, Frame({"Content-Type": "api/response"}, b"x"))

    def test_only_event_plain_is_an_event(self) -> None:
        """The gateway subscribes with ``event plain``; no other format is decoded."""
        for content_type in ("text/event-json", "text/event-xml"):
            frame = Frame({"Content-Type": content_type}, b'{"Event-Name":"HEARTBEAT"}')
            self.assertRaises(ESLProtocolError, parse_event, frame)


class ParserEdgeTests(SynchronousTestCase):
    def test_content_length_zero_is_dispatched_at_once(self) -> None:
        parser = FrameParser()
        wire = b"Content-Type: text/disconnect-notice\nContent-Disposition: linger\nContent-Length: 0\n\n"
        self.assertEqual(parser.feed(wire)[0].body, b"")
        self.assertEqual(parser.buffered, 0)

    def test_header_order_does_not_matter(self) -> None:
        a = parse_all(b"Content-Type: api/response\nContent-Length: 4\n\ntrue")
        b = parse_all(b"Content-Length: 4\nContent-Type: api/response\n\ntrue")
        self.assertEqual(a[0].body, b"true")
        self.assertEqual(b[0].body, b"true")

    def test_repeated_envelope_header_keeps_the_first(self) -> None:
        (frame,) = parse_all(b"Content-Type: command/reply\nReply-Text: +OK a\nReply-Text: -ERR b\n\n")
        self.assertEqual(frame.headers["Reply-Text"], "+OK a")

    def test_reply_text_may_contain_colon_space(self) -> None:
        (frame,) = parse_all(b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: x\n\n")
        self.assertEqual(frame.headers["Reply-Text"], "+OK Job-UUID: x")

    def test_body_is_a_byte_count(self) -> None:
        body = "שלום\n\n".encode()
        wire = b"Content-Type: api/response\nContent-Length: %d\n\n%sContent-Type: auth/request\n\n" % (len(body), body)
        frames = parse_all(wire)
        self.assertEqual([f.body for f in frames], [body, b""])

    def test_bad_content_length(self) -> None:
        for value in (b"-1", b"abc", b"", b"+5", b" 5", b"5 ", b"0x10", "\u0663".encode(), str(MAX_BODY + 1).encode()):
            wire = b"Content-Type: api/response\nContent-Length: " + value + b"\n\nxxxxx"
            with self.assertRaises(ESLProtocolError, msg=repr(value)):
                FrameParser().feed(wire)

    def test_max_body_is_allowed(self) -> None:
        parser = FrameParser()
        self.assertEqual(parser.feed(b"Content-Type: api/response\nContent-Length: %d\n\n" % MAX_BODY), [])

    def test_unterminated_header_block_over_64k(self) -> None:
        parser = FrameParser()
        parser.feed(b"Content-Type: api/response\nX: ")
        with self.assertRaises(ESLProtocolError):
            for _ in range(MAX_HEADER_BLOCK // 1000 + 2):
                parser.feed(b"y" * 1000)
        with self.assertRaises(ESLProtocolError):
            FrameParser().feed(b"X: " + b"y" * (MAX_HEADER_BLOCK + 10))

    def test_stray_blank_lines_between_frames(self) -> None:
        frames = parse_all(b"\nContent-Type: auth/request\n\n\n\nContent-Type: command/reply\nReply-Text: +OK accepted\n\n")
        self.assertEqual([f.content_type for f in frames], ["auth/request", "command/reply"])


_name = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12).filter(
    lambda n: n != "Content-Length"
)
_value = st.text(st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=30)
_frame = st.tuples(
    st.lists(st.tuples(_name, _value), min_size=1, max_size=6),
    st.one_of(st.none(), st.binary(max_size=200)),
)


def _serialize(headers: list[tuple[str, str]], body: bytes | None) -> tuple[bytes, Frame]:
    lines = [f"{k}: {v}\n".encode() for k, v in headers]
    expected: dict[str, str] = {}
    for k, v in headers:
        expected.setdefault(k, v)
    if body is not None:
        lines.append(b"Content-Length: %d\n" % len(body))
        expected.setdefault("Content-Length", str(len(body)))
    return b"".join(lines) + b"\n" + (body or b""), Frame(expected, body or b"")


class PropertyTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(
        frames=st.lists(_frame, min_size=1, max_size=8),
        cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
    )
    def test_any_chunking_gives_back_the_frames(self, frames, cuts) -> None:
        wire = b""
        expected = []
        for headers, body in frames:
            data, frame = _serialize(headers, body)
            wire += data
            expected.append(frame)
        points = sorted({c % (len(wire) + 1) for c in cuts})
        chunks = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
        self.assertEqual(parse_chunks(chunks), expected)

    @settings(max_examples=200, deadline=None)
    @given(
        headers=st.lists(st.tuples(_name, st.binary(max_size=20)), min_size=1, max_size=8),
        body=st.one_of(st.none(), st.binary(max_size=50)),
    )
    def test_event_plain_round_trip(self, headers, body) -> None:
        from urllib.parse import quote_from_bytes

        lines = [f"{k}: ".encode() + quote_from_bytes(v, safe="").encode() + b"\n" for k, v in headers]
        raw = b"".join(lines)
        raw += b"\n" if body is None else b"Content-Length: %d\n\n%s" % (len(body), body)
        event = Event(raw)
        for name, _ in headers:
            want = [v.decode("utf-8", "replace") for k, v in headers if k == name]
            self.assertEqual(event.get_all(name), want)
            self.assertEqual(event.get(name), want[0])
        self.assertEqual(event.body, body or b"")


class FixtureCopyTests(SynchronousTestCase):
    def test_repository_copy_matches_shared(self) -> None:
        shared = fx.shared_fixtures_dir()
        if not shared.is_dir():
            raise SkipTest(f"{shared} is not beside this checkout")
        names = fx.relative_files(shared)
        self.assertEqual(fx.relative_files(fx.fixtures_dir()), names)
        for name in names:
            self.assertEqual((fx.fixtures_dir() / name).read_bytes(), (shared / name).read_bytes(), name)
