"""Scripted calls: every scenario's events, originate options, kills, capacity, and captures."""

from __future__ import annotations

import json

from dialgw.simulator.scenarios import SCENARIOS, scenario_for
from tests.test_simulator_support import FIXTURES, ParsedEvent, SimulatorTestCase, names, parse_frames

START = ["CHANNEL_OUTGOING", "STATE:CS_INIT", "CHANNEL_CREATE", "CHANNEL_ORIGINATE", "STATE:CS_ROUTING", "STATE:CS_CONSUME_MEDIA"]
RING = ["CHANNEL_PROGRESS", "CALLSTATE:RINGING"]
ANSWER_PARK_OK = ["CHANNEL_ANSWER", "CALLSTATE:ACTIVE", "CALL_UPDATE", "STATE:CS_EXECUTE", "CHANNEL_EXECUTE", "CHANNEL_PARK", "API", "BACKGROUND_JOB"]
PARKED_END = [
    "CHANNEL_HANGUP", "CHANNEL_UNPARK", "CHANNEL_EXECUTE_COMPLETE", "STATE:CS_HANGUP", "CALLSTATE:HANGUP",
    "STATE:CS_REPORTING", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY", "STATE:CS_DESTROY",
]
REFUSED = [
    "CHANNEL_HANGUP", "STATE:CS_HANGUP", "CALLSTATE:HANGUP", "STATE:CS_REPORTING", "CHANNEL_HANGUP_COMPLETE",
    "API", "BACKGROUND_JOB", "CHANNEL_DESTROY", "STATE:CS_DESTROY",
]
TIMED_OUT = [
    "CHANNEL_HANGUP", "API", "BACKGROUND_JOB", "STATE:CS_HANGUP", "CALLSTATE:HANGUP", "STATE:CS_REPORTING",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY", "STATE:CS_DESTROY",
]
WITHOUT_VARIABLES = {"CHANNEL_STATE", "CHANNEL_CALLSTATE", "CHANNEL_OUTGOING", "API", "BACKGROUND_JOB", "HEARTBEAT"}


def job_result(events: list[ParsedEvent]) -> bytes | None:
    jobs = [e for e in events if e.name == "BACKGROUND_JOB"]
    return jobs[-1].body if jobs else None


class ScenarioTests(SimulatorTestCase):
    """One test per far-end behaviour."""

    async def test_answered_then_far_end_hangs_up(self) -> None:
        client = await self.connect(events="plain ALL")
        uuid = await self.originate(client, "0521000001", "dialgw_session=test1")
        await client.settle()
        self.assertEqual(names(client.remaining_events()), START)
        await self.advance(0.19)
        self.assertEqual(client.remaining_events(), [])
        await self.advance(0.01)
        self.assertEqual(names(await client.events_until("CHANNEL_CALLSTATE")), RING)
        await self.advance(0.79)
        self.assertEqual(client.remaining_events(), [])
        await self.advance(0.01)
        answered = await client.events_until("BACKGROUND_JOB")
        self.assertEqual(names(answered), ANSWER_PARK_OK)
        self.assertEqual(answered[-1].body, f"+OK {uuid}\n".encode())
        self.assertEqual(self.simulator.calls[uuid].state, "answered")
        await self.advance(2.99)
        self.assertEqual(client.remaining_events(), [])
        await self.advance(0.01)
        await client.settle()
        ended = client.remaining_events()
        self.assertEqual(names(ended), PARKED_END)
        complete = ended[6]
        self.assertEqual(complete.all("Hangup-Cause"), ["NORMAL_CLEARING", "NORMAL_CLEARING"])
        self.assertEqual(complete.get("variable_hangup_cause"), "NORMAL_CLEARING")
        self.assertEqual(complete.get("variable_billsec"), "3")
        self.assertEqual(complete.get("variable_sip_hangup_disposition"), "recv_bye")
        self.assertNotIn(uuid, self.simulator.calls)

    async def _run_call(self, number: str, variables: str = "", until: float = 8.0) -> tuple[str, list[ParsedEvent]]:
        client = await self.connect(events="plain ALL")
        uuid = await self.originate(client, number, variables)
        await self.run_clock(until)
        return uuid, [e for e in client.remaining_events() if e.get("Unique-ID") in (uuid, None) and e.name not in ("HEARTBEAT", "RE_SCHEDULE")]

    async def test_busy(self) -> None:
        uuid, events = await self._run_call("0521000002")
        self.assertEqual(names(events), START + REFUSED)
        hangup = events[len(START)]
        self.assertEqual(
            (hangup.get("Hangup-Cause"), hangup.get("Channel-Call-State"), hangup.get("Answer-State")),
            ("USER_BUSY", "DOWN", "hangup"),
        )
        self.assertEqual(job_result(events), b"-ERR USER_BUSY\n")
        self.assertEqual(hangup.get("variable_sip_term_status"), "486")

    async def test_rejected(self) -> None:
        uuid, events = await self._run_call("0521000005")
        self.assertEqual(names(events), START + REFUSED)
        self.assertEqual(job_result(events), b"-ERR CALL_REJECTED\n")
        self.assertEqual(events[len(START)].get("Hangup-Cause"), "CALL_REJECTED")

    async def test_no_answer_at_originate_timeout(self) -> None:
        client = await self.connect(events="plain ALL")
        uuid = await self.originate(client, "0521000003", "originate_timeout=3")
        await self.advance(0.2, 2.7)
        self.assertNotIn("CHANNEL_HANGUP", names(client.remaining_events()))
        await self.advance(0.1)
        events = await client.events_until("CHANNEL_STATE", uuid)
        events += await client.events_until("CHANNEL_STATE", uuid)
        events += await client.events_until("CHANNEL_STATE", uuid)
        self.assertEqual(names(events), TIMED_OUT)
        self.assertEqual(job_result(events), b"-ERR NO_ANSWER\n")
        self.assertEqual(events[0].get("Channel-Call-State"), "RINGING")

    async def test_no_answer_default_timeout_is_60(self) -> None:
        client = await self.connect(events="plain BACKGROUND_JOB")
        await self.originate(client, "0521000003")
        await self.advance(59.9)
        self.assertEqual(client.remaining_events(), [])
        await self.advance(0.1)
        [job] = await client.events_until("BACKGROUND_JOB")
        self.assertEqual(job.body, b"-ERR NO_ANSWER\n")

    async def test_early_media_returns_ok_before_answer(self) -> None:
        client = await self.connect(events="plain ALL")
        uuid = await self.originate(client, "0521000004", "originate_timeout=1")
        await self.advance(0.2)
        early = await client.events_until("CHANNEL_PARK")
        self.assertEqual(
            names(early)[len(START):],
            ["CHANNEL_PROGRESS_MEDIA", "CALLSTATE:EARLY", "CALL_UPDATE", "API", "BACKGROUND_JOB",
             "STATE:CS_EXECUTE", "CHANNEL_EXECUTE", "CHANNEL_PARK"],
        )
        media = early[len(START)]
        self.assertEqual((media.get("Answer-State"), media.get("Channel-Call-State")), ("early", "DOWN"))
        self.assertEqual(job_result(early), f"+OK {uuid}\n".encode())
        self.assertEqual(self.simulator.calls[uuid].state, "early")
        # originate_timeout no longer applies: the call is answered at 1.5 s.
        await self.advance(1.0, 0.29)
        self.assertEqual(client.remaining_events(), [])
        await self.advance(0.01)
        answered = await client.events_until("CHANNEL_CALLSTATE", uuid)
        self.assertEqual(names(answered), ["CHANNEL_ANSWER", "CALLSTATE:ACTIVE"])
        self.assertEqual(answered[0].get("Channel-Call-State"), "EARLY")

    async def test_early_media_ignored_waits_for_answer(self) -> None:
        client = await self.connect(events="plain ALL")
        uuid = await self.originate(client, "0521000004", "ignore_early_media=true")
        await self.advance(0.2)
        events = client.remaining_events()
        self.assertEqual(names(events)[-3:], ["CHANNEL_PROGRESS_MEDIA", "CALLSTATE:EARLY", "CALL_UPDATE"])
        await self.advance(1.2)
        self.assertEqual(client.remaining_events(), [])
        await self.advance(0.1)
        answered = await client.events_until("BACKGROUND_JOB")
        self.assertEqual(names(answered), [n for n in ANSWER_PARK_OK if n != "CALL_UPDATE"])
        self.assertEqual(answered[-1].body, f"+OK {uuid}\n".encode())
        self.assertEqual(answered[0].get("variable_originate_early_media"), "false")

    async def test_early_media_ignored_times_out(self) -> None:
        client = await self.connect(events="plain ALL")
        await self.originate(client, "0521000004", "ignore_early_media=true,originate_timeout=1")
        await self.advance(0.2, 0.8)
        events = await client.events_until("BACKGROUND_JOB")
        self.assertEqual(events[-1].body, b"-ERR NO_ANSWER\n")
        self.assertEqual(events[-3].get("Channel-Call-State"), "EARLY")

    async def test_answer_and_stay_up(self) -> None:
        for digit in "6890":
            client = await self.connect(events="plain BACKGROUND_JOB CHANNEL_HANGUP")
            uuid = await self.originate(client, f"052100000{digit}")
            await self.advance(1.0)
            [job] = await client.events_until("BACKGROUND_JOB")
            self.assertEqual(job.body, f"+OK {uuid}\n".encode(), digit)
            await self.advance(600)
            self.assertEqual([e.name for e in client.remaining_events()], [], digit)
            self.assertEqual(self.simulator.calls[uuid].state, "answered", digit)

    async def test_failure_without_channel_events(self) -> None:
        client = await self.connect(events="plain ALL")
        await self.originate(client, "0521000007")
        events = await client.events_until("BACKGROUND_JOB")
        self.assertEqual(names(events), ["API", "BACKGROUND_JOB"])
        self.assertEqual(events[-1].body, b"-ERR DESTINATION_OUT_OF_ORDER\n")
        self.assertEqual(self.simulator.calls, {})

    async def test_scenario_table(self) -> None:
        self.assertEqual(sorted(SCENARIOS), list("0123456789"))
        self.assertEqual(scenario_for("0521000004").digit, "4")
        self.assertEqual(scenario_for("05210000x").digit, "0")


class OriginateOptionTests(SimulatorTestCase):
    """Variables, kills, sched_hangup, duplicates, capacity, api originate."""

    simulator_options = {"max_sessions": 2, "sessions_per_second": 3}

    async def test_variables_only_on_events_that_carry_them(self) -> None:
        uuid, events = await self._answered_and_killed()
        for event in events:
            carries = any(key.startswith("variable_") for key, _ in event.headers)
            if event.name in WITHOUT_VARIABLES:
                self.assertFalse(carries, event.name)
            else:
                self.assertTrue(carries, event.name)
                self.assertEqual(event.get("variable_dialgw_session"), "s-1", event.name)
        sequences = [int(e.get("Event-Sequence") or 0) for e in events if e.get("Unique-ID") == uuid]
        self.assertEqual(sequences, sorted(sequences))
        self.assertEqual(len(set(sequences)), len(sequences))
        for event in events:
            if event.get("Unique-ID") == uuid:
                self.assertEqual(event.get("Call-Direction"), "outbound")
                self.assertEqual(event.get("Caller-Destination-Number"), "0521000006")
                self.assertEqual(event.get("Caller-Orig-Caller-ID-Number"), "0721234567")

    async def _answered_and_killed(self) -> tuple[str, list[ParsedEvent]]:
        client = await self.connect(events="plain ALL")
        uuid = await self.originate(client, "0521000006", "dialgw_session=s-1")
        await self.advance(0.2, 0.8)
        await client.events_until("BACKGROUND_JOB")
        reply = await client.command(f"api uuid_kill {uuid}")
        self.assertEqual(reply.body, b"+OK\n")
        reply = await client.command(f"api uuid_exists {uuid}")
        self.assertEqual(reply.body, b"false")
        await client.settle()
        client.cursor = 0
        events = [f.event() for f in client.frames if (f.content_type or "").startswith("text/event")]
        return uuid, events

    async def test_uuid_kill_after_answer(self) -> None:
        uuid, events = await self._answered_and_killed()
        ours = [e for e in events if e.get("Unique-ID") == uuid]
        self.assertEqual(names(ours)[-len(PARKED_END):], PARKED_END)
        self.assertEqual(ours[-len(PARKED_END)].get("Hangup-Cause"), "NORMAL_CLEARING")
        self.assertEqual(ours[-3].get("variable_sip_hangup_disposition"), "send_bye")

    async def test_uuid_kill_replies_come_before_its_events(self) -> None:
        client = await self.connect(events="plain CHANNEL_HANGUP")
        uuid = await self.originate(client, "0521000006")
        await self.advance(1.0)
        client.send(f"api uuid_kill {uuid} USER_BUSY\n\n")
        first = await client.frame()
        self.assertEqual((first.content_type, first.body), ("api/response", b"+OK\n"))
        [hangup] = await client.events_until("CHANNEL_HANGUP")
        self.assertEqual(hangup.get("Hangup-Cause"), "USER_BUSY")

    async def test_uuid_kill_while_ringing(self) -> None:
        client = await self.connect(events="plain ALL")
        uuid = await self.originate(client, "0521000003")
        await self.advance(0.5)
        reply = await client.command(f"api uuid_kill {uuid} ORIGINATOR_CANCEL")
        self.assertEqual(reply.body, b"+OK\n")
        events = await client.events_until("CHANNEL_STATE", uuid)
        while names(events)[-1] != "STATE:CS_DESTROY":
            events += await client.events_until("CHANNEL_STATE", uuid)
        ours = [e for e in events if e.get("Unique-ID") in (uuid, None)]
        self.assertEqual(names(ours)[-len(REFUSED):], REFUSED)
        self.assertEqual(job_result(ours), b"-ERR ORIGINATOR_CANCEL\n")

    async def test_uuid_kill_unknown_and_unknown_cause(self) -> None:
        client = await self.connect(events="plain CHANNEL_HANGUP")
        reply = await client.command("api uuid_kill 00000000-0000-0000-0000-000000000000")
        self.assertEqual(reply.body, b"-ERR No such channel!\n")
        uuid = await self.originate(client, "0521000006")
        await self.advance(1)
        await client.command(f"api uuid_kill {uuid} NOT_A_CAUSE")
        [hangup] = await client.events_until("CHANNEL_HANGUP")
        self.assertEqual(hangup.get("Hangup-Cause"), "NORMAL_CLEARING")

    async def test_execute_on_answer_sched_hangup(self) -> None:
        client = await self.connect(events="plain CHANNEL_ANSWER CHANNEL_HANGUP")
        await self.originate(client, "0521000006", "execute_on_answer='sched_hangup +3 ALLOTTED_TIMEOUT'")
        await self.advance(1.0)
        [answer] = await client.events_until("CHANNEL_ANSWER")
        self.assertEqual(answer.get("variable_execute_on_answer"), "sched_hangup +3 ALLOTTED_TIMEOUT")
        await self.advance(2.9)
        self.assertEqual(client.remaining_events(), [])
        await self.advance(0.1)
        [hangup] = await client.events_until("CHANNEL_HANGUP")
        self.assertEqual(hangup.get("Hangup-Cause"), "ALLOTTED_TIMEOUT")

    async def test_execute_on_answer_default_cause(self) -> None:
        client = await self.connect(events="plain CHANNEL_HANGUP")
        await self.originate(client, "0521000001", "execute_on_answer='sched_hangup +1'")
        await self.advance(1.0, 1.0)
        [hangup] = await client.events_until("CHANNEL_HANGUP")
        self.assertEqual(hangup.get("Hangup-Cause"), "ALLOTTED_TIMEOUT")

    async def test_api_sched_hangup(self) -> None:
        client = await self.connect(events="plain CHANNEL_HANGUP")
        uuid = await self.originate(client, "0521000006")
        await self.advance(1.0)
        reply = await client.command(f"api sched_hangup +2 {uuid} MANAGER_REQUEST")
        self.assertEqual(reply.body, b"+OK\n")
        await self.advance(1.9)
        self.assertEqual(client.remaining_events(), [])
        await self.advance(0.1)
        [hangup] = await client.events_until("CHANNEL_HANGUP")
        self.assertEqual(hangup.get("Hangup-Cause"), "MANAGER_REQUEST")
        reply = await client.command(f"api sched_hangup +2 {uuid}")
        self.assertEqual(reply.body, b"-ERR No such channel!\n")

    async def test_duplicate_origination_uuid(self) -> None:
        client = await self.connect(events="plain ALL")
        uuid = await self.originate(client, "0521000006", job="aaaaaaaa-0000-4000-8000-000000000001")
        await client.events_until("CHANNEL_STATE", uuid)
        await client.settle()
        client.remaining_events()
        await self.originate(client, "0521000001", uuid=uuid, job="aaaaaaaa-0000-4000-8000-000000000002")
        events = await client.events_until("BACKGROUND_JOB")
        self.assertEqual(names(events), ["API", "BACKGROUND_JOB"])
        self.assertEqual(events[-1].body, b"-ERR DESTINATION_OUT_OF_ORDER\n")
        self.assertEqual(self.simulator.calls[uuid].destination, "0521000006")

    async def test_max_sessions(self) -> None:
        client = await self.connect(events="plain BACKGROUND_JOB CHANNEL_CREATE")
        for _ in range(2):
            await self.originate(client, "0521000006")
            await self.advance(1.0)
        await client.settle()
        client.remaining_events()
        await self.originate(client, "0521000006")
        [job] = await client.events_until("BACKGROUND_JOB")
        self.assertEqual(job.body, b"-ERR DESTINATION_OUT_OF_ORDER\n")
        self.assertEqual(len(self.simulator.calls), 2)

    async def test_sessions_per_second(self) -> None:
        client = await self.connect(events="plain BACKGROUND_JOB")
        bodies = []
        for _ in range(4):
            await self.originate(client, "0521000007")
            [job] = await client.events_until("BACKGROUND_JOB")
            bodies.append(job.body)
        self.assertEqual(bodies, [b"-ERR DESTINATION_OUT_OF_ORDER\n"] * 4)
        await self.advance(1.0)
        await self.originate(client, "0521000002")
        await self.advance(1.0)
        [job] = await client.events_until("BACKGROUND_JOB")
        self.assertEqual(job.body, b"-ERR USER_BUSY\n")
        # The fourth originate in one second is refused before any channel exists.
        for _ in range(3):
            await self.originate(client, "0521000002")
        await self.originate(client, "0521000002")
        [job] = await client.events_until("BACKGROUND_JOB")
        self.assertEqual(job.body, b"-ERR DESTINATION_OUT_OF_ORDER\n")

    async def test_api_originate_blocks_the_connection(self) -> None:
        client = await self.connect(events="plain ALL")
        uuid = "bbbbbbbb-0000-4000-8000-000000000001"
        client.send(
            f"api originate {{origination_uuid={uuid}}}sofia/gateway/trunk/0521000001 &park()\n\n"
            f"api uuid_exists {uuid}\n\n"
        )
        await self.settle()
        await self.advance(0.2, 0.7)
        self.assertEqual(client.frames[client.cursor :], [])
        await self.advance(0.2)
        first = await client.frame()
        self.assertEqual((first.content_type, first.body), ("api/response", f"+OK {uuid}\n".encode()))
        held = await client.events_until("API")
        self.assertEqual(names(held), START + RING + ANSWER_PARK_OK[:-2] + ["API"])
        reply = await client.reply()
        self.assertEqual(reply.body, b"true")

    async def test_uuid_setvar_and_getvar(self) -> None:
        client = await self.connect(events="plain CHANNEL_HANGUP")
        uuid = await self.originate(client, "0521000006")
        reply = await client.command(f"api uuid_setvar {uuid} my_tag 'a b'")
        self.assertEqual(reply.body, b"+OK\n")
        reply = await client.command(f"api uuid_getvar {uuid} my_tag")
        self.assertEqual(reply.body, b"a b")
        reply = await client.command(f"api uuid_getvar {uuid} nothing")
        self.assertEqual(reply.body, b"_undef_")
        self.assertEqual(self.simulator.calls[uuid].variables["my_tag"], "a b")
        await client.command(f"api uuid_kill {uuid}")
        [hangup] = await client.events_until("CHANNEL_HANGUP")
        self.assertEqual(hangup.get("variable_my_tag"), "a b")
        reply = await client.command(f"api uuid_setvar {uuid} my_tag x")
        self.assertEqual(reply.body, b"-ERR No such channel!\n")

    async def test_show_channels_plain(self) -> None:
        client = await self.connect()
        uuid = await self.originate(client, "0521000006")
        reply = await client.command("api show channels")
        lines = reply.body.decode().split("\n")
        self.assertTrue(lines[0].startswith("uuid,direction,created,created_epoch,name,state,"))
        self.assertTrue(lines[1].startswith(f"{uuid},outbound,"))
        self.assertEqual(lines[-3:], ["", "1 total.", ""])

    async def test_far_end_hangup_api(self) -> None:
        client = await self.connect(events="plain CHANNEL_HANGUP_COMPLETE")
        uuid = await self.originate(client, "0521000006")
        await self.advance(1.0)
        self.assertTrue(self.simulator.hangup(uuid, "NORMAL_CLEARING"))
        [complete] = await client.events_until("CHANNEL_HANGUP_COMPLETE")
        self.assertEqual(complete.get("variable_sip_hangup_disposition"), "recv_bye")
        self.assertFalse(self.simulator.hangup(uuid))

    async def test_variable_references_are_not_set(self) -> None:
        client = await self.connect(events="plain CHANNEL_CREATE")
        uuid = await self.originate(client, "0521000006", "evil=${uuid},fine=1")
        [create] = await client.events_until("CHANNEL_CREATE")
        self.assertIsNone(create.get("variable_evil"))
        self.assertEqual(create.get("variable_fine"), "1")
        self.assertNotIn("evil", self.simulator.calls[uuid].variables)

    async def test_event_values_are_url_encoded(self) -> None:
        client = await self.connect(events="plain CHANNEL_CREATE")
        await self.originate(client, "0521000006", "origination_caller_id_name='Acme Support: 24/7 #1'")
        await client.events_until("CHANNEL_CREATE")
        raw = bytes(client.raw)
        self.assertIn(b"\nCaller-Caller-ID-Name: Acme%20Support%3A%2024/7%20%231\n", raw)
        self.assertIn(b"\nvariable_origination_caller_id_name: Acme%20Support%3A%2024/7%20%231\n", raw)
        self.assertIn(b"\nChannel-Name: sofia/gateway/trunk/0521000006\n", raw)

    async def test_json_call_events(self) -> None:
        client = await self.connect(events="json ALL")
        uuid = await self.originate(client, "0521000002")
        await self.advance(0.5)
        await client.events_until("CHANNEL_STATE", uuid)
        await client.settle()
        frames = client.frames
        complete = next(f for f in frames if b'"Event-Name":"CHANNEL_HANGUP_COMPLETE"' in f.body)
        self.assertEqual(complete.body.count(b'"Hangup-Cause":"USER_BUSY"'), 2)
        job = next(f for f in frames if b'"Event-Name":"BACKGROUND_JOB"' in f.body)
        self.assertEqual(json.loads(job.body)["_body"], "-ERR USER_BUSY\n")

    async def test_show_channels_as_json(self) -> None:
        client = await self.connect()
        uuid = await self.originate(client, "0521000006")
        await self.advance(1.0)
        reply = await client.command("api show channels as json")
        self.assertFalse(reply.body.endswith(b"\n"))
        data = json.loads(reply.body)
        self.assertEqual(data["row_count"], 1)
        [row] = data["rows"]
        self.assertEqual((row["uuid"], row["dest"], row["callstate"], row["direction"]), (uuid, "0521000006", "ACTIVE", "outbound"))
        self.assertTrue(all(isinstance(v, str) for v in row.values()))
        capture = FIXTURES / "call_uuid_kill.raw"
        if capture.exists():
            frames, _ = parse_frames(capture.read_bytes())
            captured = next(json.loads(f.body) for f in frames if f.body.startswith(b'{"row_count"'))
            self.assertEqual(list(row), list(captured["rows"][0]))


class CaptureFidelityTests(SimulatorTestCase):
    """The simulator replays each captured .sent and must produce the captured outbound-leg events."""

    KEYS = (
        "Channel-State", "Channel-State-Number", "Channel-Call-State", "Answer-State", "Hangup-Cause",
        "Channel-Name", "Unique-ID", "Channel-Call-UUID", "Channel-HIT-Dialplan", "Original-Channel-Call-State",
        "Channel-Call-State-Number", "Caller-Caller-ID-Name", "Caller-Caller-ID-Number",
        "Caller-Orig-Caller-ID-Number", "Caller-Callee-ID-Name", "Caller-Callee-ID-Number",
        "Caller-Destination-Number", "Caller-ANI", "Application", "API-Command", "API-Command-Argument",
        "Job-Command", "Job-Command-Arg", "Event-Calling-File", "Event-Calling-Function",
        "Event-Calling-Line-Number",
    )

    def _capture_events(self, name: str) -> list[ParsedEvent]:
        frames, _ = parse_frames((FIXTURES / f"{name}.raw").read_bytes())
        events = [f.event() for f in frames if f.content_type == "text/event-plain"]
        return [
            e for e in events
            if e.get("Call-Direction") == "outbound" or e.name in ("API", "BACKGROUND_JOB")
        ]

    async def _replay(self, name: str) -> tuple[list[ParsedEvent], list[ParsedEvent]]:
        path = FIXTURES / f"{name}.sent"
        client = await self.connect(auth=False)
        client.send(path.read_bytes())
        await self.settle(0.05)
        await self.run_clock(8.0)
        ours = [
            e for e in client.remaining_events()
            if e.get("Call-Direction") == "outbound" or e.name in ("API", "BACKGROUND_JOB")
        ]
        theirs = [e for e in self._capture_events(name) if e.name != "CODEC"]
        return ours, theirs

    def _compare(self, ours: list[ParsedEvent], theirs: list[ParsedEvent]) -> None:
        self.assertEqual(names(ours), names(theirs))
        for mine, real in zip(ours, theirs, strict=True):
            for key in self.KEYS:
                self.assertEqual(mine.get(key), real.get(key), f"{mine.name} {key}")
            self.assertEqual(mine.all("Hangup-Cause"), real.all("Hangup-Cause"), mine.name)
            self.assertEqual(
                [k for k, _ in mine.headers if not k.startswith("variable_")],
                [k for k, _ in real.headers if not k.startswith("variable_")],
                mine.name,
            )
            self.assertEqual(
                any(k.startswith("variable_") for k, _ in mine.headers),
                any(k.startswith("variable_") for k, _ in real.headers),
                mine.name,
            )
            self.assertEqual(mine.body, real.body, mine.name)
            if real.get("variable_dialgw_session"):
                self.assertEqual(mine.get("variable_dialgw_session"), "test1")

    async def test_answered(self) -> None:
        self._compare(*await self._replay("call_answered"))

    async def test_busy(self) -> None:
        self._compare(*await self._replay("call_busy"))

    async def test_noanswer(self) -> None:
        self._compare(*await self._replay("call_noanswer"))

    async def test_earlymedia(self) -> None:
        self._compare(*await self._replay("call_earlymedia"))

    async def test_rejected(self) -> None:
        self._compare(*await self._replay("call_rejected"))
