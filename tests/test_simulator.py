"""The simulator's wire protocol: greeting, auth, commands, replies, events, framing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from twisted.application.service import IServiceMaker
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

from dialgw.simulator import tap, wire
from dialgw.simulator.dialstring import parse_originate, separate
from dialgw.simulator.protocol import ESLServerFactory
from dialgw.simulator.server import RECORDED_BYTES, RECORDED_COMMANDS, FreeSwitchSimulator, simulator_service
from dialgw.simulator.wire import CommandReader, Event
from tests.test_simulator_support import UUID_RE, SimulatorTestCase, parse_frames

# Small real captures, byte for byte (fixtures/freeswitch/*.raw and *.sent).
AUTH_OK_RAW = b"Content-Type: auth/request\n\nContent-Type: command/reply\nReply-Text: +OK accepted\n\n"
AUTH_BADPW_RAW = (
    b"Content-Type: auth/request\n\nContent-Type: command/reply\nReply-Text: -ERR invalid\n\n"
    b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n"
    b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
)
NOAUTH_CMD_RAW = b"Content-Type: auth/request\n\nContent-Type: command/reply\nReply-Text: -ERR command not found\n\n"
API_MISC_SENT = (
    b"auth ClueCon\n\napi status\n\napi version\n\napi show channels as json\n\napi show calls\n\n"
    b"api show calls as json\n\napi uuid_exists 00000000-0000-0000-0000-000000000000\n\n"
    b"api uuid_kill 00000000-0000-0000-0000-000000000000\n\napi nosuchcommand\n\nbgapi status\n\n"
    b"event plain CHANNEL_CREATE CHANNEL_ANSWER\n\nevent plain ALL\n\nnoevents\n\nevent json CHANNEL_CREATE\n\n"
    b"nixevent CHANNEL_CREATE\n\nfilter variable_dialgw_session test1\n\nfilter Event-Name HEARTBEAT\n\n"
    b"filter delete variable_dialgw_session test1\n\nfilter delete all\n\nbogus_command\n\nexit\n\n"
)
API_MISC_RAW = (
    b"Content-Type: auth/request\n\nContent-Type: command/reply\nReply-Text: +OK accepted\n\n"
    b"Content-Type: api/response\nContent-Length: 333\n\n"
    b"UP 0 years, 0 days, 0 hours, 0 minutes, 16 seconds, 225 milliseconds, 458 microseconds\n"
    b"FreeSWITCH (Version 1.11.3-dev  64bit) is ready\n2 session(s) since startup\n"
    b"0 session(s) - peak 2, last 5min 2 \n0 session(s) per Sec out of max 30, peak 2, last 5min 2 \n"
    b"1000 session(s) max\nmin idle cpu 0.00/98.67\nCurrent Stack Size/Max 240K/8192K\n"
    b"Content-Type: api/response\nContent-Length: 45\n\nFreeSWITCH Version 1.11.3-dev~64bit ( 64bit)\n"
    b'Content-Type: api/response\nContent-Length: 17\n\n{"row_count": 0}\n'
    b"Content-Type: api/response\nContent-Length: 10\n\n\n0 total.\n"
    b'Content-Type: api/response\nContent-Length: 17\n\n{"row_count": 0}\n'
    b"Content-Type: api/response\nContent-Length: 5\n\nfalse"
    b"Content-Type: api/response\nContent-Length: 22\n\n-ERR No such channel!\n"
    b"Content-Type: api/response\nContent-Length: 38\n\n-ERR nosuchcommand Command not found!\n"
    b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: f97b3de9-5322-42e2-b57e-d89c39e3489e\n"
    b"Job-UUID: f97b3de9-5322-42e2-b57e-d89c39e3489e\n\n"
    b"Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n"
    b"Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n"
    b"Content-Type: command/reply\nReply-Text: +OK no longer listening for events\n\n"
    b"Content-Type: command/reply\nReply-Text: +OK event listener enabled json\n\n"
    b"Content-Type: command/reply\nReply-Text: +OK events nixed\n\n"
    b"Content-Type: command/reply\nReply-Text: +OK filter added. [variable_dialgw_session]=[test1]\n\n"
    b"Content-Type: command/reply\nReply-Text: +OK filter added. [Event-Name]=[HEARTBEAT]\n\n"
    b"Content-Type: command/reply\nReply-Text: +OK filter deleted. [variable_dialgw_session][test1]\n\n"
    b"Content-Type: command/reply\nReply-Text: +OK filter deleted. [all][]\n\n"
    b"Content-Type: command/reply\nReply-Text: -ERR command not found\n\n"
    b"Content-Type: command/reply\nReply-Text: +OK bye\n\n"
    b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n"
    b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
)


def shape(data: bytes) -> bytes:
    """Varying values (UUIDs, numbers) blanked out; framing and texts kept."""
    return re.sub(rb"\d+", b"N", UUID_RE.sub(b"<uuid>", data))


class URLEncodingTests(SynchronousTestCase):
    """switch_url_encode, case by case."""

    def test_encodes_like_switch_url_encode(self) -> None:
        cases = [
            ("plain", "abc-_.~/,'()*!$", "abc-_.~/,'()*!$"),
            ("space and colon", "2026-11-26 14:26:54", "2026-11-26%2014%3A26%3A54"),
            ("unsafe set", '\r\n #%&+:;<=>?@[\\]^`{|}"', "%0D%0A%20%23%25%26%2B%3A%3B%3C%3D%3E%3F%40%5B%5C%5D%5E%60%7B%7C%7D%22"),
            ("utf-8 uppercase hex", "ש", "%D7%A9"),
            ("control and DEL", "\x01\x7f", "%01%7F"),
            ("existing %XX not double-encoded", "100%25 sure", "100%25%20sure"),
            ("lowercase %xx is encoded", "a%2fb", "a%252fb"),
            ("% near the end", "50%", "50%25"),
            ("% with one digit", "5%A", "5%25A"),
        ]
        for label, raw, expected in cases:
            self.assertEqual(wire.url_encode(raw), expected, label)

    def test_plain_body_nested_content_length(self) -> None:
        event = Event([("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", "x")], body="+OK abc\n")
        frame = wire.event_frame(event, "plain")
        body = b"Event-Name: BACKGROUND_JOB\nJob-UUID: x\nContent-Length: 8\n\n+OK abc\n"
        self.assertEqual(frame, b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body)

    def test_empty_value_is_undef(self) -> None:
        self.assertEqual(wire.serialize_plain(Event([("A", "")])), b"A: _undef_\n\n")

    def test_json_keeps_duplicates_and_body(self) -> None:
        event = Event([("Event-Name", "X"), ("Hangup-Cause", "A"), ("Hangup-Cause", "A")], body="+OK\n")
        self.assertEqual(
            wire.serialize_json(event),
            b'{"Event-Name":"X","Hangup-Cause":"A","Hangup-Cause":"A","Content-Length":"4","_body":"+OK\\n"}',
        )


class CommandReaderTests(SynchronousTestCase):
    """Client command framing as read_packet does it."""

    def test_framing_cases(self) -> None:
        cases = [
            ("simple", [b"api status\n\n"], [("api status", [])]),
            ("byte at a time", [bytes([b]) for b in b"auth x\n\n"], [("auth x", [])]),
            ("stray newlines skipped", [b"\n\r\n\nexit\n\n"], [("exit", [])]),
            ("CRLF", [b"api status\r\n\r\n"], [("api status", [])]),
            ("header", [b"bgapi status\nJob-UUID:  abc\n\n"], [("bgapi status", [("Job-UUID", "abc")])]),
            ("two pipelined", [b"a\n\nb\n\n"], [("a", []), ("b", [])]),
        ]
        for label, chunks, expected in cases:
            reader = CommandReader()
            got = [(c.line, c.headers) for chunk in chunks for c in reader.feed(chunk)]
            self.assertEqual(got, expected, label)

    def test_body_by_content_length(self) -> None:
        reader = CommandReader()
        commands = list(reader.feed(b"sendevent X\nContent-Length: 3\n\nab"))
        self.assertEqual(commands, [])
        commands = list(reader.feed(b"cexit\n\n"))
        self.assertEqual([(c.line, c.body) for c in commands], [("sendevent X", b"abc"), ("exit", b"")])


class DialStringTests(SynchronousTestCase):
    """The {} block and argument splitting."""

    def test_variable_block_cases(self) -> None:
        cases = [
            ("quotes protect spaces", "{a='x y',b=2}sofia/gw/1 &park()", {"a": "x y", "b": "2"}),
            ("quotes do not protect commas", "{a='x,y',b=2}sofia/gw/1 &park()", {"a": "x", "b": "2"}),
            ("backslash comma", "{a=x\\,y,b=2}sofia/gw/1 &park()", {"a": "x,y", "b": "2"}),
            ("caret delimiter", "{^^:a=x,y:b=2}sofia/gw/1 &park()", {"a": "x,y", "b": "2"}),
            ("first equals sign", "{a=1=2}sofia/gw/1 &park()", {"a": "1=2"}),
            (
                "execute_on_answer",
                "{execute_on_answer='sched_hangup +3 ALLOTTED_TIMEOUT'}sofia/gw/1 &park()",
                {"execute_on_answer": "sched_hangup +3 ALLOTTED_TIMEOUT"},
            ),
        ]
        for label, arg, expected in cases:
            self.assertEqual(parse_originate(arg).variables, expected, label)

    def test_destination_is_last_segment(self) -> None:
        cases = [
            ("sofia/gateway/trunk/0521000001", "0521000001"),
            ("sofia/caller/0521000001@127.0.0.1:5080", "0521000001"),
            ("{a=b}sofia/internal/1234", "1234"),
        ]
        for dial, expected in cases:
            self.assertEqual(parse_originate(dial + " &park()").destination, expected, dial)

    def test_timeout(self) -> None:
        self.assertEqual(parse_originate("sofia/gw/1 &park()").timeout, 60)
        self.assertEqual(parse_originate("{originate_timeout=3}sofia/gw/1 &park()").timeout, 3)

    def test_separate_on_spaces(self) -> None:
        self.assertEqual(separate("a  'b c'  d", " "), ["a", "b c", "d"])


class AuthTests(SimulatorTestCase):
    """Greeting and authentication, byte for byte as captured."""

    async def test_auth_ok_matches_capture(self) -> None:
        client = await self.connect(auth=False)
        await client.command("auth ClueCon")
        self.assertEqual(bytes(client.raw), AUTH_OK_RAW)

    async def test_bad_password_matches_capture_and_closes(self) -> None:
        client = await self.connect(auth=False)
        client.send("auth wrongpass\n\n")
        await client.lost
        self.assertEqual(bytes(client.raw), AUTH_BADPW_RAW)

    async def test_command_before_auth_matches_capture_and_stays_open(self) -> None:
        client = await self.connect(auth=False)
        await client.command("api status")
        self.assertEqual(bytes(client.raw), NOAUTH_CMD_RAW)
        reply = await client.command("auth ClueCon")
        self.assertEqual(reply.get("Reply-Text"), "+OK accepted")

    async def test_every_command_before_auth_is_not_found(self) -> None:
        client = await self.connect(auth=False)
        for line in ("event plain ALL", "bgapi status", "filter A b", "noevents", "auth"):
            reply = await client.command(line)
            self.assertEqual(reply.get("Reply-Text"), "-ERR command not found", line)

    async def test_exit_before_auth_says_bye(self) -> None:
        client = await self.connect(auth=False)
        client.send("exit\n\n")
        await client.lost
        frames, _ = parse_frames(bytes(client.raw))
        self.assertEqual([f.get("Reply-Text") for f in frames[1:2]], ["+OK bye"])
        self.assertEqual(frames[2].body, wire.GOODBYE.encode())


class AuthTimeoutTests(SimulatorTestCase):
    """An unauthenticated connection gets 25 s per command, then the goodbye notice."""

    async def test_auth_timeout(self) -> None:
        client = await self.connect(auth=False)
        await self.advance(24.9)
        self.assertFalse(client.closed)
        await client.command("api status")  # a command restarts the wait
        await self.advance(24.9)
        self.assertFalse(client.closed)
        await self.advance(0.2)
        await client.lost
        notice = client.frames[-1]
        self.assertEqual(notice.raw, wire.disconnect_notice())

    async def test_no_timeout_after_auth(self) -> None:
        client = await self.connect()
        await self.advance(100)
        reply = await client.command("api uuid_exists x")
        self.assertEqual(reply.body, b"false")


class CommandReplyTests(SimulatorTestCase):
    """Replies to the api_misc commands, pipelined, in the captured shapes and order."""

    async def test_api_misc_matches_capture_shape(self) -> None:
        client = await self.connect(auth=False)
        client.send(API_MISC_SENT)
        await client.lost
        self.assertEqual(shape(bytes(client.raw)), shape(API_MISC_RAW))

    async def test_bgapi_without_job_uuid_generates_one(self) -> None:
        client = await self.connect(events="plain BACKGROUND_JOB")
        reply = await client.command("bgapi version")
        job = reply.get("Job-UUID")
        self.assertEqual(reply.get("Reply-Text"), f"+OK Job-UUID: {job}")
        self.assertTrue(UUID_RE.fullmatch(job.encode()), job)  # type: ignore[union-attr]
        [event] = await client.events_until("BACKGROUND_JOB")
        self.assertEqual(event.get("Job-UUID"), job)
        self.assertEqual(event.get("Job-Command"), "version")
        self.assertIsNone(event.get("Job-Command-Arg"))
        self.assertEqual(event.body, b"FreeSWITCH Version 1.11.3-dev~64bit ( 64bit)\n")

    async def test_unknown_api_in_bgapi(self) -> None:
        client = await self.connect(events="plain BACKGROUND_JOB")
        await client.command("bgapi nope x\nJob-UUID: j1")
        [event] = await client.events_until("BACKGROUND_JOB")
        self.assertEqual(event.body, b"-ERR nope Command not found!\n")

    async def test_exit_ignores_later_commands(self) -> None:
        client = await self.connect()
        client.send("exit\n\napi status\n\n")
        await client.lost
        self.assertEqual([f.content_type for f in client.frames[-2:]], ["command/reply", "text/disconnect-notice"])
        self.assertEqual(self.simulator.connections, [])

    async def test_event_without_keywords(self) -> None:
        client = await self.connect()
        for line in ("event", "event json", "event plain NOT_AN_EVENT"):
            reply = await client.command(line)
            self.assertEqual(reply.get("Reply-Text"), "-ERR no keywords supplied", line)
        reply = await client.command("noevents")
        self.assertEqual(reply.get("Reply-Text"), "-ERR not listening for events")

    async def test_filter_without_value_is_invalid(self) -> None:
        client = await self.connect()
        reply = await client.command("filter Unique-ID")
        self.assertEqual(reply.get("Reply-Text"), "-ERR invalid syntax")

    async def test_received_records_every_byte_and_commands(self) -> None:
        client = await self.connect(auth=False)
        payload = b"\r\nauth ClueCon\n\napi uuid_exists x\r\nJob-UUID: evil\n\n"
        client.send(payload)
        await client.reply()
        await client.reply()
        self.assertEqual(bytes(self.simulator.received), payload)
        self.assertEqual(list(self.simulator.commands), ["auth ClueCon", "api uuid_exists x"])


class EventDeliveryTests(SimulatorTestCase):
    """Subscriptions, filters, formats and heartbeats."""

    simulator_options = {"heartbeat_sec": 20}

    async def test_heartbeat_cadence_and_headers(self) -> None:
        client = await self.connect(events="plain HEARTBEAT")
        await self.advance(19.9)
        self.assertEqual(client.remaining_events(), [])
        await self.advance(0.1)
        [beat] = await client.events_until("HEARTBEAT")
        for header in (
            "Core-UUID",
            "Up-Time",
            "Uptime-msec",
            "Session-Count",
            "Max-Sessions",
            "Session-Per-Sec",
            "Idle-CPU",
            "FreeSWITCH-Version",
            "Event-Sequence",
        ):
            self.assertIsNotNone(beat.get(header), header)
        self.assertEqual(beat.get("Event-Info"), "System Ready")
        self.assertEqual(beat.get("Max-Sessions"), "1000")
        self.assertEqual(beat.get("Core-UUID"), self.simulator.core_uuid)
        await self.advance(20)
        await client.events_until("HEARTBEAT")
        await self.advance(10)
        self.assertEqual(client.remaining_events(), [])

    async def test_heartbeat_header_order_matches_capture(self) -> None:
        client = await self.connect(events="plain HEARTBEAT")
        await self.advance(20)
        [beat] = await client.events_until("HEARTBEAT")
        captured = (
            "Event-Name Core-UUID FreeSWITCH-Hostname FreeSWITCH-Switchname FreeSWITCH-IPv4 FreeSWITCH-IPv6 "
            "Event-Date-Local Event-Date-GMT Event-Date-Timestamp Event-Calling-File Event-Calling-Function "
            "Event-Calling-Line-Number Event-Sequence Event-Info Up-Time FreeSWITCH-Version Uptime-msec "
            "Session-Count Max-Sessions Session-Per-Sec Session-Per-Sec-Last Session-Per-Sec-Max "
            "Session-Per-Sec-FiveMin Session-Since-Startup Session-Peak-Max Session-Peak-FiveMin Idle-CPU"
        ).split()
        self.assertEqual([k for k, _ in beat.headers], captured)

    async def test_events_only_to_subscribers(self) -> None:
        quiet = await self.connect()
        other = await self.connect(events="plain CHANNEL_CREATE")
        await self.advance(20)
        await other.settle()
        self.assertEqual(quiet.remaining_events(), [])
        self.assertEqual(other.remaining_events(), [])

    async def test_filter_drops_heartbeat_and_job_unless_matched(self) -> None:
        client = await self.connect(events="plain ALL")
        await client.command("filter variable_dialgw_session test1")
        await self.originate(client, "0521000007", job="aaaaaaaa-0000-4000-8000-000000000001")
        await self.advance(20)
        await client.settle()
        self.assertEqual(client.remaining_events(), [])
        await client.command("filter Event-Name BACKGROUND_JOB")
        await self.originate(client, "0521000007", job="aaaaaaaa-0000-4000-8000-000000000002")
        [job] = await client.events_until("BACKGROUND_JOB")
        self.assertEqual(job.get("Job-UUID"), "aaaaaaaa-0000-4000-8000-000000000002")

    async def test_filters_are_ored(self) -> None:
        client = await self.connect(events="plain ALL")
        await client.command("filter Event-Name HEARTBEAT")
        await client.command("filter Event-Name BACKGROUND_JOB")
        await client.command("bgapi version")
        await self.advance(20)
        events = await client.events_until("HEARTBEAT")
        self.assertEqual([e.name for e in events], ["BACKGROUND_JOB", "HEARTBEAT"])
        await client.settle()
        self.assertEqual(client.remaining_events(), [])

    async def test_negative_filter_drops(self) -> None:
        client = await self.connect(events="plain HEARTBEAT BACKGROUND_JOB")
        await client.command("filter Event-Name -HEARTBEAT")
        await client.command("filter Event-Name BACKGROUND_JOB")
        await self.advance(20)
        await client.command("bgapi version")
        [event] = await client.events_until("BACKGROUND_JOB")
        self.assertEqual(event.name, "BACKGROUND_JOB")

    async def test_nixevent_and_noevents(self) -> None:
        client = await self.connect(events="plain HEARTBEAT BACKGROUND_JOB")
        reply = await client.command("nixevent HEARTBEAT")
        self.assertEqual(reply.get("Reply-Text"), "+OK events nixed")
        await self.advance(20)
        await client.command("bgapi version")
        self.assertEqual([e.name for e in await client.events_until("BACKGROUND_JOB")], ["BACKGROUND_JOB"])
        await client.command("noevents")
        await client.command("bgapi version")
        await client.settle()
        self.assertEqual(client.remaining_events(), [])

    async def test_json_events(self) -> None:
        client = await self.connect(events="json BACKGROUND_JOB")
        await client.command("bgapi uuid_exists nope\nJob-UUID: j-json")
        frame = await client.frame()
        self.assertEqual(frame.headers[0][0], "Content-Length")
        self.assertEqual(frame.content_type, "text/event-json")
        event = frame.event()
        self.assertTrue(all(isinstance(v, str) for _, v in event.headers))
        self.assertEqual(event.get("Content-Length"), "5")
        self.assertEqual(event.body, b"false")

    async def test_api_and_bgapi_fire_api_events(self) -> None:
        client = await self.connect(events="plain API")
        await client.command("api uuid_exists x")
        [event] = await client.events_until("API")
        self.assertEqual(event.get("API-Command"), "uuid_exists")
        self.assertEqual(event.get("API-Command-Argument"), "x")


class ControlTests(SimulatorTestCase):
    """drop_connections, restart, shutdown, silent."""

    async def test_drop_connections_keeps_calls(self) -> None:
        client = await self.connect(events="plain ALL")
        uuid = await self.originate(client, "0521000006")
        await self.advance(1.0)
        self.simulator.drop_connections()
        await client.lost
        self.assertEqual(self.simulator.connections, [])
        self.assertEqual(self.simulator.calls[uuid].state, "answered")
        again = await self.connect()
        reply = await again.command(f"api uuid_exists {uuid}")
        self.assertEqual(reply.body, b"true")

    async def test_restart_forgets_calls_and_changes_core_uuid(self) -> None:
        client = await self.connect(events="plain ALL")
        uuid = await self.originate(client, "0521000001")
        old_core = self.simulator.core_uuid
        self.simulator.restart()
        await client.lost
        self.assertEqual(self.simulator.calls, {})
        self.assertNotEqual(self.simulator.core_uuid, old_core)
        watcher = await self.connect(events="plain ALL")
        await self.advance(1, 5)
        self.assertEqual(watcher.remaining_events(), [])
        reply = await watcher.command(f"api uuid_exists {uuid}")
        self.assertEqual(reply.body, b"false")
        await self.advance(20)
        [beat] = (await watcher.events_until("HEARTBEAT"))[-1:]
        self.assertEqual(beat.get("Core-UUID"), self.simulator.core_uuid)

    async def test_shutdown(self) -> None:
        client = await self.connect(events="plain ALL")
        uuid = await self.originate(client, "0521000006")
        await self.advance(0.2, 0.8)
        await client.events_until("BACKGROUND_JOB")
        self.simulator.shutdown()
        await client.lost
        frames, _ = parse_frames(bytes(client.raw))
        tail = [f for f in frames if f.content_type != "text/event-plain"][-1]
        self.assertEqual(tail.raw, b"Content-Type: text/disconnect-notice\nContent-Length: 31\n\nThe system is being shut down.\n")
        events = [f.event() for f in frames if f.content_type == "text/event-plain"]
        self.assertIn("SHUTDOWN", [e.name for e in events])
        [hangup] = [e for e in events if e.name == "CHANNEL_HANGUP"]
        self.assertEqual((hangup.get("Unique-ID"), hangup.get("Hangup-Cause")), (uuid, "SYSTEM_SHUTDOWN"))
        self.assertEqual(self.simulator.calls, {})

    async def test_silent_writes_nothing_then_resumes(self) -> None:
        client = await self.connect(events="plain ALL")
        before = len(client.raw)
        self.simulator.silent = True
        client.send("api status\n\n")
        await self.originate_quietly(client)
        await self.advance(20, 20)
        self.assertEqual(len(client.raw), before)
        self.assertFalse(client.closed)
        self.assertIn("api status", self.simulator.commands)
        late = await self.connect_without_greeting()
        self.simulator.silent = False
        reply = await client.reply()
        self.assertEqual(reply.content_type, "api/response")
        greeting = await late.frame()
        self.assertEqual(greeting.raw, b"Content-Type: auth/request\n\n")

    async def originate_quietly(self, client) -> None:  # type: ignore[no-untyped-def]
        client.send("bgapi originate {origination_uuid=aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee}sofia/gw/t/0521000006 &park()\n\n")
        await self.settle()

    async def connect_without_greeting(self):  # type: ignore[no-untyped-def]
        from twisted.internet import reactor
        from twisted.internet.endpoints import TCP4ClientEndpoint
        from twisted.internet.protocol import Factory

        from tests.test_simulator_support import ESLTestClient

        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        client = await endpoint.connect(Factory.forProtocol(ESLTestClient))
        self.addCleanup(self._close, client)
        await self.settle()
        self.assertEqual(bytes(client.raw), b"")
        return client


class PluginTests(SynchronousTestCase):
    """twistd finds the plugin; the service tree is what the brief says."""

    def test_plugin_is_discoverable(self) -> None:
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("dialgw-simulator", makers)
        self.assertIs(makers["dialgw-simulator"].options, tap.Options)

    def test_options_defaults_and_parsing(self) -> None:
        options = tap.Options()
        options.parseOptions([])
        self.assertEqual(
            (options["listen"], options["password"], options["heartbeat"]),
            ("tcp:8021:interface=127.0.0.1", "ClueCon", 20.0),
        )
        options = tap.Options()
        options.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--password", "pw", "--heartbeat", "5"])
        self.assertEqual((options["password"], options["heartbeat"]), ("pw", 5.0))

    def test_service_tree(self) -> None:
        from twisted.application.internet import StreamServerEndpointService

        options = tap.Options()
        options.parseOptions(["--listen", "tcp:0:interface=127.0.0.1", "--password", "pw"])
        service = tap.makeService(options)
        children = {child.name: child for child in service}  # type: ignore[attr-defined]
        self.assertEqual(list(children), ["switch", "esl"])  # the switch starts first, stops last
        self.assertIsInstance(children["esl"], StreamServerEndpointService)
        simulator = children["switch"]
        self.assertIsInstance(simulator, FreeSwitchSimulator)
        self.assertEqual(simulator.password, "pw")
        self.assertFalse(simulator.running)
        simulator.stop()


class ServiceTests(SynchronousTestCase):
    """The simulator is a service: nothing runs before it starts or after it stops; its records are bounded."""

    def connection(self, simulator: FreeSwitchSimulator, data: bytes = b"") -> StringTransport:
        protocol = ESLServerFactory(simulator).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        return transport

    def test_nothing_is_scheduled_until_the_service_starts(self) -> None:
        clock = Clock()
        simulator = FreeSwitchSimulator(clock=clock, heartbeat_sec=5)
        self.assertEqual(clock.getDelayedCalls(), [])
        simulator.startService()
        self.assertEqual([call.getTime() for call in clock.getDelayedCalls()], [5.0])
        simulator.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_heartbeats_only_while_running(self) -> None:
        clock = Clock()
        simulator = FreeSwitchSimulator(clock=clock, heartbeat_sec=5)
        watcher = self.connection(simulator, b"auth ClueCon\n\nevent plain HEARTBEAT\n\n")
        clock.advance(10)
        self.assertNotIn(b"HEARTBEAT", watcher.value())
        simulator.startService()
        clock.advance(5)
        self.assertEqual(watcher.value().count(b"Event-Name: HEARTBEAT"), 1)
        simulator.stopService()
        clock.advance(10)
        self.assertEqual(watcher.value().count(b"Event-Name: HEARTBEAT"), 1)

    def test_stopping_cancels_call_timers_and_auth_timeouts_but_keeps_calls(self) -> None:
        clock = Clock()
        simulator = FreeSwitchSimulator(clock=clock)
        simulator.startService()
        self.connection(simulator)  # waits for auth: a timeout runs
        self.connection(simulator, b"auth ClueCon\n\nbgapi originate {origination_uuid=u1}sofia/gateway/t/0521000001 &park()\n\n")
        self.assertIn("u1", simulator.calls)
        simulator.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(list(simulator.calls), ["u1"])

    def test_simulator_service_starts_the_switch_then_listens(self) -> None:
        memory = MemoryReactor()
        clock = Clock()
        service = simulator_service(memory, clock, "tcp:8021:interface=127.0.0.1", heartbeat_sec=5, password="pw")
        children = {child.name: child for child in service}  # type: ignore[attr-defined]
        self.assertEqual(list(children), ["switch", "esl"])
        simulator = children["switch"]
        self.assertEqual((simulator.password, simulator.heartbeat_sec), ("pw", 5))
        self.assertEqual((clock.getDelayedCalls(), memory.tcpServers), ([], []))
        service.startService()
        self.assertTrue(simulator.running)
        [(port, factory, _, interface)] = memory.tcpServers
        self.assertEqual((port, interface), (8021, "127.0.0.1"))
        self.assertIsInstance(factory, ESLServerFactory)
        self.assertIs(factory.core, simulator)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        service.stopService()
        self.assertFalse(simulator.running)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_what_it_records_is_bounded(self) -> None:
        simulator = FreeSwitchSimulator(clock=Clock())
        simulator.record(b"a" * RECORDED_BYTES)
        simulator.record(b"bc")
        self.assertEqual(len(simulator.received), RECORDED_BYTES)
        self.assertEqual(bytes(simulator.received[-3:]), b"abc")
        for number in range(RECORDED_COMMANDS + 2):
            simulator.record_command(f"api {number}")
        self.assertEqual(len(simulator.commands), RECORDED_COMMANDS)
        self.assertEqual((simulator.commands[0], simulator.commands[-1]), ("api 2", f"api {RECORDED_COMMANDS + 1}"))

    def test_the_gateway_does_not_import_the_simulator(self) -> None:
        """Only a config with [simulator] brings it in (dialgw.service imports it when asked)."""
        code = (
            "import sys, dialgw.service\n"
            "from twisted.application.service import IServiceMaker\n"
            "from twisted.plugin import getPlugins\n"
            "makers = [maker.tapname for maker in getPlugins(IServiceMaker)]\n"
            "assert 'dialgw-simulator' in makers, makers\n"
            "print(sorted(name for name in sys.modules if name.startswith('dialgw.simulator')))\n"
        )
        root = Path(__file__).resolve().parents[1]  # this checkout, not an installed copy
        done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.strip(), "[]")
