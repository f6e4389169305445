"""ESLClientProtocol over StringTransport and Clock, plus capture replays."""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from dialgw.esl.frames import Event, Frame
from dialgw.esl.protocol import (
    ESLAuthError,
    ESLClientProtocol,
    ESLCommandError,
    ESLCommandTimeout,
    ESLConnectionLost,
    ESLError,
    ESLInjectionError,
)

from . import esl_fixtures as fx

AUTH_REQUEST = b"Content-Type: auth/request\n\n"
ACCEPTED = b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"


def reply(text: str, extra: str = "") -> bytes:
    return f"Content-Type: command/reply\nReply-Text: {text}\n{extra}\n".encode()


def api_response(body: bytes) -> bytes:
    return b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(body), body)


def event_frame(name: str, unique_id: str = "u-1", extra: bytes = b"") -> bytes:
    body = f"Event-Name: {name}\nUnique-ID: {unique_id}\n".encode() + extra + b"\n"
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(body), body)


class Harness:
    def __init__(self, password: str = "ClueCon", timeout: float = 10.0) -> None:
        self.clock = Clock()
        self.proto = ESLClientProtocol(password, self.clock, command_timeout=timeout)
        self.transport = StringTransport()
        self.events: list[Event] = []
        self.notices: list[Frame] = []
        self.proto.on_event = self.events.append
        self.proto.on_disconnect_notice = self.notices.append
        self.proto.makeConnection(self.transport)

    def feed(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.proto.dataReceived(chunk)

    def written(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def authenticate(self) -> None:
        self.feed(AUTH_REQUEST)
        self.written()
        self.feed(ACCEPTED)

    def lose(self, reason: Exception | None = None) -> None:
        self.proto.connectionLost(Failure(reason or ConnectionDone()))


class AuthTests(SynchronousTestCase):
    def test_auth_ok_matches_the_capture(self) -> None:
        h = Harness()
        authed = h.proto.whenAuthenticated()
        for direction, data in fx.log("auth_ok"):
            if direction == "recv" and data:
                h.feed(data)
        self.assertEqual(h.written(), fx.sent("auth_ok"))
        self.assertIsNone(self.successResultOf(authed))
        self.assertTrue(h.proto.authenticated)
        self.assertIsNone(self.successResultOf(h.proto.whenAuthenticated()))

    def test_bad_password(self) -> None:
        h = Harness(password="wrongpass")
        authed = h.proto.whenAuthenticated()
        h.feed(*fx.recv_chunks("auth_badpw"))
        self.assertEqual(h.written(), fx.sent("auth_badpw"))
        failure = self.failureResultOf(authed, ESLAuthError)
        self.assertIn("-ERR invalid", str(failure.value))
        self.assertEqual(len(h.notices), 1)
        self.assertEqual(h.notices[0].body[:23], b"Disconnected, goodbye.\n")
        self.assertTrue(h.transport.disconnecting)
        h.lose()
        self.failureResultOf(h.proto.whenAuthenticated(), ESLAuthError)

    def test_connection_lost_before_auth(self) -> None:
        h = Harness()
        authed = h.proto.whenAuthenticated()
        h.feed(AUTH_REQUEST)
        h.lose(ConnectionLost())
        self.failureResultOf(authed, ESLAuthError)

    def test_no_auth_request_times_out(self) -> None:
        h = Harness(timeout=5)
        authed = h.proto.whenAuthenticated()
        h.clock.advance(5)
        self.failureResultOf(authed, ESLAuthError)
        self.assertTrue(h.transport.disconnected)

    def test_password_with_newline_is_refused(self) -> None:
        self.assertRaises(ESLInjectionError, ESLClientProtocol, "a\n\napi system rm", Clock())

    def test_stray_reply_before_auth_is_ignored(self) -> None:
        # noauth_cmd shows a reply before we sent anything of ours.
        h = Harness()
        h.feed(reply("-ERR command not found"))
        self.assertEqual(h.written(), b"")
        h.feed(AUTH_REQUEST)
        self.assertEqual(h.written(), b"auth ClueCon\n\n")
        h.feed(ACCEPTED)
        self.successResultOf(h.proto.whenAuthenticated())

    def test_commands_before_auth_wait_for_it(self) -> None:
        h = Harness()
        result = h.proto.api("status")
        self.assertEqual(h.written(), b"")
        h.feed(AUTH_REQUEST)
        self.assertEqual(h.written(), b"auth ClueCon\n\n")
        h.feed(ACCEPTED)
        self.assertEqual(h.written(), b"api status\n\n")
        h.feed(api_response(b"UP"))
        self.assertEqual(self.successResultOf(result), "UP")

    def test_commands_before_failed_auth_fail(self) -> None:
        h = Harness()
        result = h.proto.api("status")
        h.feed(AUTH_REQUEST, reply("-ERR invalid"))
        self.failureResultOf(result, ESLAuthError)
        self.assertEqual(h.written(), b"auth ClueCon\n\n")

    def test_rude_rejection_closes(self) -> None:
        h = Harness()
        authed = h.proto.whenAuthenticated()
        h.feed(b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n")
        self.assertTrue(h.transport.disconnecting)
        h.lose()
        self.failureResultOf(authed, ESLAuthError)


class CommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.h.authenticate()

    def test_wire_format(self) -> None:
        self.h.proto.send_command("sendmsg abc", {"call-command": "hangup", "hangup-cause": "NORMAL_CLEARING"})
        self.assertEqual(self.h.written(), b"sendmsg abc\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING\n\n")

    def test_bgapi_sends_job_uuid(self) -> None:
        d = self.h.proto.bgapi("originate {x=1}sofia/gw/1 &park()", "c7709e9c-1517-4b3d-8c5e-25f1b8a1f4e1")
        self.assertEqual(
            self.h.written(),
            b"bgapi originate {x=1}sofia/gw/1 &park()\nJob-UUID: c7709e9c-1517-4b3d-8c5e-25f1b8a1f4e1\n\n",
        )
        self.h.feed(
            reply(
                "+OK Job-UUID: c7709e9c-1517-4b3d-8c5e-25f1b8a1f4e1",
                "Job-UUID: c7709e9c-1517-4b3d-8c5e-25f1b8a1f4e1\n",
            )
        )
        frame = self.successResultOf(d)
        self.assertEqual(frame.headers["Job-UUID"], "c7709e9c-1517-4b3d-8c5e-25f1b8a1f4e1")

    def test_fifo_matching_of_mixed_replies(self) -> None:
        p = self.h.proto
        a = p.api("uuid_exists x")
        b = p.bgapi("status", "job-1")
        c = p.send_command("filter Event-Name HEARTBEAT")
        d = p.api("version")
        self.h.feed(
            api_response(b"false"),
            event_frame("CHANNEL_CREATE"),
            reply("+OK Job-UUID: job-1", "Job-UUID: job-1\n"),
            reply("+OK filter added. [Event-Name]=[HEARTBEAT]") + api_response(b"FreeSWITCH Version 1.11\n"),
        )
        self.assertEqual(self.successResultOf(a), "false")
        self.assertEqual(self.successResultOf(b).headers["Job-UUID"], "job-1")
        self.assertIn("filter added", self.successResultOf(c).headers["Reply-Text"])
        self.assertEqual(self.successResultOf(d), "FreeSWITCH Version 1.11\n")
        self.assertEqual([e.name for e in self.h.events], ["CHANNEL_CREATE"])

    def test_timed_out_command_keeps_its_slot(self) -> None:
        p, clock = self.h.proto, self.h.clock
        slow = p.api("slow")
        clock.advance(6)
        fast = p.api("fast")
        clock.advance(4)
        self.failureResultOf(slow, ESLCommandTimeout)
        self.assertNoResult(fast)
        # The late reply to "slow" arrives first and must not go to "fast".
        self.h.feed(api_response(b"slow result"))
        self.assertNoResult(fast)
        self.h.feed(api_response(b"fast result"))
        self.assertEqual(self.successResultOf(fast), "fast result")

    def test_cancelled_command_keeps_its_slot(self) -> None:
        p = self.h.proto
        first = p.api("one")
        second = p.api("two")
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.h.feed(api_response(b"1"), api_response(b"2"))
        self.assertEqual(self.successResultOf(second), "2")

    def test_timeout_timers_are_cancelled_on_reply(self) -> None:
        self.h.proto.api("x")
        self.h.feed(api_response(b"ok"))
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_injection_is_refused_and_nothing_written(self) -> None:
        p = self.h.proto
        cases = {
            "LF in command": lambda: p.send_command("api status\n\napi system id"),
            "CR in command": lambda: p.send_command("api status\rx"),
            "NUL in command": lambda: p.send_command("api status\x00"),
            "LF in api": lambda: p.api("uuid_kill x\n\nexit"),
            "LF in bgapi": lambda: p.bgapi("originate a\nb", "job"),
            "LF in job uuid": lambda: p.bgapi("status", "job\n\napi system id"),
            "CR in header value": lambda: p.send_command("sendmsg", {"a": "b\r"}),
            "LF in header name": lambda: p.send_command("sendmsg", {"a\nb": "c"}),
            "NUL in header name": lambda: p.send_command("sendmsg", {"a\x00": "c"}),
            "colon in header name": lambda: p.send_command("sendmsg", {"a: b": "c"}),
            "empty command": lambda: p.send_command(""),
        }
        for name, call in cases.items():
            with self.assertRaises(ESLInjectionError, msg=name):
                call()
            self.assertEqual(self.h.written(), b"", name)
        self.assertTrue(issubclass(ESLInjectionError, ValueError))
        self.assertTrue(issubclass(ESLInjectionError, ESLError))

    def test_pending_commands_fail_on_connection_loss(self) -> None:
        p = self.h.proto
        late = p.api("late")
        self.h.clock.advance(6)
        a, b = p.api("a"), p.bgapi("b", "j")
        self.h.clock.advance(4)
        self.failureResultOf(late, ESLCommandTimeout)
        self.h.lose(ConnectionLost())
        self.failureResultOf(a, ESLConnectionLost)
        self.failureResultOf(b, ESLConnectionLost)
        self.failureResultOf(p.api("after"), ESLConnectionLost)
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_api_gets_command_reply_instead(self) -> None:
        d = self.h.proto.api("status")
        self.h.feed(reply("-ERR permission denied"))
        self.failureResultOf(d, ESLCommandError)

    def test_subscribe(self) -> None:
        d = self.h.proto.subscribe(["CHANNEL_ANSWER", "BACKGROUND_JOB", "HEARTBEAT"])
        self.assertEqual(self.h.written(), b"event plain CHANNEL_ANSWER BACKGROUND_JOB HEARTBEAT\n\n")
        self.h.feed(reply("+OK event listener enabled plain"))
        self.successResultOf(d)
        bad = self.h.proto.subscribe(["NOPE"])
        self.assertEqual(self.h.written(), b"event plain NOPE\n\n")
        self.h.feed(reply("-ERR no keywords supplied"))
        self.failureResultOf(bad, ESLCommandError)
        for names in ([], ["A B"], [""]):
            self.assertRaises(ValueError, self.h.proto.subscribe, names)
        self.assertEqual(self.h.written(), b"")

    def test_exit(self) -> None:
        d = self.h.proto.exit()
        self.assertEqual(self.h.written(), b"exit\n\n")
        self.h.feed(reply("+OK bye"))
        self.successResultOf(d)


class IncomingFrameTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()
        self.h.authenticate()

    def test_events_are_dispatched(self) -> None:
        self.h.feed(event_frame("CHANNEL_ANSWER", "abc") + event_frame("CHANNEL_HANGUP", "abc", b"Hangup-Cause: USER_BUSY\n"))
        self.assertEqual([(e.name, e.unique_id) for e in self.h.events], [("CHANNEL_ANSWER", "abc"), ("CHANNEL_HANGUP", "abc")])
        self.assertEqual(self.h.events[1].get("Hangup-Cause"), "USER_BUSY")

    def test_events_in_a_format_never_subscribed_are_ignored(self) -> None:
        body = b'{"Event-Name":"HEARTBEAT","Session-Count":"3"}'
        self.h.feed(
            b"Content-Length: %d\nContent-Type: text/event-json\n\n%s" % (len(body), body)
            + event_frame("CHANNEL_ANSWER", "abc")
        )
        self.assertEqual([(e.name, e.unique_id) for e in self.h.events], [("CHANNEL_ANSWER", "abc")])
        self.assertFalse(self.h.transport.disconnecting)

    def test_content_length_zero_at_end_of_chunk(self) -> None:
        linger = (
            b"Content-Type: text/disconnect-notice\nContent-Disposition: linger\n"
            b"Channel-Name: sofia/x\nLinger-Time: 30\nContent-Length: 0\n\n"
        )
        self.h.feed(event_frame("CHANNEL_HANGUP") + linger)
        self.assertEqual(len(self.h.notices), 1)
        self.assertEqual(self.h.notices[0].body, b"")
        self.assertFalse(self.h.transport.disconnecting)

    def test_disconnect_notice_closes(self) -> None:
        self.h.feed(b"Content-Type: text/disconnect-notice\nContent-Length: 31\n\nThe system is being shut down.\n")
        self.assertEqual(self.h.notices[0].body, b"The system is being shut down.\n")
        self.assertTrue(self.h.transport.disconnecting)

    def test_corrupt_stream_aborts(self) -> None:
        self.h.feed(b"Content-Type: api/response\nContent-Length: -5\n\n")
        self.assertTrue(self.h.transport.disconnected)
        self.assertEqual(len(self.flushLoggedErrors()), 1)
        self.h.feed(event_frame("CHANNEL_ANSWER"))
        self.assertEqual(self.h.events, [])

    def test_failing_event_handler_does_not_stop_the_stream(self) -> None:
        seen = []

        def handler(event: Event) -> None:
            seen.append(event.name)
            if len(seen) == 1:
                raise RuntimeError("boom")

        self.h.proto.on_event = handler
        d = self.h.proto.api("x")
        self.h.feed(event_frame("A") + event_frame("B") + api_response(b"ok"))
        self.assertEqual(seen, ["A", "B"])
        self.assertEqual(self.successResultOf(d), "ok")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_last_activity_follows_bytes(self) -> None:
        self.h.clock.advance(7)
        self.h.feed(b"Content-")
        self.assertEqual(self.h.proto.last_activity, 7)


class CaptureReplayTests(SynchronousTestCase):
    """Send what the recording client sent; feed what FreeSWITCH answered."""

    def test_api_misc(self) -> None:
        h = Harness()
        p = h.proto
        h.feed(AUTH_REQUEST)
        results: list[Deferred] = []
        for block in fx.sent("api_misc").split(b"\n\n")[1:-1]:
            command = block.decode()
            results.append(p.api(command[4:]) if command.startswith("api ") else p.send_command(command))
        h.feed(fx.raw("api_misc")[len(AUTH_REQUEST) :])
        self.assertEqual(fx.sent("api_misc"), b"auth ClueCon\n\n" + h.written().split(b"auth ClueCon\n\n", 1)[1])
        values = [self.successResultOf(d) for d in results]
        self.assertTrue(values[0].startswith("UP 0 years"))
        self.assertEqual(values[2], '{"row_count": 0}\n')
        self.assertEqual(values[5], "false")
        self.assertEqual(values[6], "-ERR No such channel!\n")
        self.assertEqual(values[8].headers["Job-UUID"], "f97b3de9-5322-42e2-b57e-d89c39e3489e")
        self.assertEqual(values[-2].headers["Reply-Text"], "-ERR command not found")
        self.assertEqual(values[-1].headers["Reply-Text"], "+OK bye")
        self.assertEqual(h.notices[0].body[:22], b"Disconnected, goodbye.")

    def test_call_uuid_kill_in_real_chunks(self) -> None:
        h = Harness()
        p = h.proto
        blocks = fx.sent("call_uuid_kill").split(b"\n\n")[:-1]
        results: list[Deferred] = []
        for block in blocks[1:]:
            command = block.decode()
            results.append(p.api(command[4:]) if command.startswith("api ") else p.send_command(command))
        h.feed(*fx.recv_chunks("call_uuid_kill"))
        self.assertEqual(h.written(), fx.sent("call_uuid_kill"))
        values = [self.successResultOf(d) for d in results]
        self.assertEqual(values[0].headers["Reply-Text"], "+OK event listener enabled plain")
        self.assertTrue(values[1].headers["Reply-Text"].startswith("+OK Job-UUID: "))
        self.assertEqual(values[2:], ["true", values[3], "+OK\n", "false"])
        self.assertIn('"uuid":"e32502e5-260a-426c-9180-d44c83fecdad"', values[3])
        self.assertEqual(len(h.events), 52)
        ours = [e.name for e in h.events if e.unique_id == "e32502e5-260a-426c-9180-d44c83fecdad"]
        self.assertIn("CHANNEL_ANSWER", ours)
        self.assertIn("CHANNEL_HANGUP_COMPLETE", ours)

    def test_every_originate_capture_replays(self) -> None:
        for name in ("call_answered", "call_busy", "call_noanswer", "call_earlymedia", "call_rejected", "call_max_duration"):
            h = Harness()
            blocks = fx.sent(name).split(b"\n\n")[1:-1]
            results = [h.proto.send_command(b.decode()) for b in blocks]
            h.feed(*fx.recv_chunks(name))
            self.assertEqual(h.written(), fx.sent(name), name)
            for d in results:
                self.assertTrue(self.successResultOf(d).headers["Reply-Text"].startswith("+OK"), name)
            jobs = [e for e in h.events if e.name == "BACKGROUND_JOB"]
            self.assertEqual(len(jobs), 1, name)

    def test_shutdown_listener(self) -> None:
        h = Harness()
        h.proto.subscribe(["ALL"])
        h.feed(*fx.recv_chunks("shutdown_listener"))
        self.assertEqual(h.written(), fx.sent("shutdown_listener"))
        self.assertEqual(h.notices[0].body, b"The system is being shut down.\n")
        self.assertTrue(h.transport.disconnecting)
        self.assertIn("SHUTDOWN", [e.name for e in h.events])
