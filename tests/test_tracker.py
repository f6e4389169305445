"""The call tracker with fake node links, an in-memory store and a Clock.

Every ESL trap of ESL.md that concerns following a call is a case here;
events are real event-plain bytes parsed by the real parser.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dialgw.calls.tracker import CallTracker
from dialgw.esl.frames import Frame, FrameParser, parse_event
from dialgw.pool import NodePool, PoolNode
from dialgw.store import Session


def event(name: str, body: bytes = b"", **headers: str):
    lines = [f"Event-Name: {name}"]
    lines += [f"{key.replace('_', '-')}: {quote(value, safe='')}" for key, value in headers.items()]
    text = "\n".join(lines) + "\n"
    if body:
        text += f"Content-Length: {len(body)}\n\n"
        payload = text.encode() + body
    else:
        payload = text.encode() + b"\n"
    frame = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(payload) + payload
    (parsed,) = FrameParser().feed(frame)
    return parse_event(parsed)


@attrs.define
class FakeLink:
    name: str = "fs1"
    ready: bool = True
    session_count: int | None = None
    commands: list = attrs.field(factory=list)
    api_replies: dict = attrs.field(factory=dict)
    bgapi_reply: str = "+OK Job-UUID: x"

    def api(self, command: str) -> Deferred:
        self.commands.append(("api", command))
        verb = command.split()[0]
        reply = self.api_replies.get(verb, "-ERR no reply\n")
        if isinstance(reply, Exception):
            return fail(reply)
        return succeed(reply)

    def bgapi(self, command: str, job_uuid: str) -> Deferred:
        self.commands.append(("bgapi", command, job_uuid))
        return succeed(Frame({"Content-Type": "command/reply", "Reply-Text": self.bgapi_reply}, b""))


@attrs.define
class MemoryStore:
    transitions: list = attrs.field(factory=list)

    def record_transition(self, session_uuid, from_status, to_status, at, hangup_cause=None):
        self.transitions.append((session_uuid, from_status, to_status, at, hangup_cause))
        return succeed(object())


def new_session(fs_node: str = "fs1", status: str = "dialing", started_at: float = 0.0, **kw) -> Session:
    channel = str(uuid.uuid4())
    return Session(
        session_uuid=f"acW68-{channel}", app_id="app_1", node_id="acW68", fs_node=fs_node,
        channel_uuid=channel, job_uuid=str(uuid.uuid4()), to_number="0527121102",
        from_number="0721234567", timeout_sec=30, max_duration_sec=60, metadata_json="{}",
        status=status, started_at=started_at, **kw,
    )


class TrackerTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.link = FakeLink()
        self.other_link = FakeLink(name="fs2")
        self.store = MemoryStore()
        self.pool = NodePool(self.clock, [PoolNode("fs1", self.link, 10, 10), PoolNode("fs2", self.other_link, 10, 10)])
        self.tracker = CallTracker(
            node_id="acW68", store=self.store, pool=self.pool, clock=self.clock,
            links={"fs1": self.link, "fs2": self.other_link},
            dial_strings={"fs1": "sofia/gateway/trunk/{to}", "fs2": "sofia/gateway/trunk/{to}"},
            grace_sec=5.0,
        )

    def dial(self, **kw) -> Session:
        session = new_session(**kw)
        self.pool.adopt(session.fs_node)  # what the API's reserve() did
        self.successResultOf(self.tracker.originate(session))
        return session

    def statuses(self, session: Session) -> list[tuple[str, str | None]]:
        return [(t[2], t[4]) for t in self.store.transitions if t[0] == session.session_uuid]

    def feed(self, session: Session, *names: str, link=None, **headers) -> None:
        for name in names:
            self.tracker.on_event(link or self.link, event(name, Unique_ID=session.channel_uuid, **headers))

    def job(self, session: Session, body: bytes, link=None) -> None:
        self.tracker.on_event(link or self.link, event("BACKGROUND_JOB", body, Job_UUID=session.job_uuid))


class LifecycleTests(TrackerTestCase):
    def test_originate_sends_one_bgapi_with_our_job_uuid(self) -> None:
        session = self.dial()
        (kind, command, job) = self.link.commands[0]
        self.assertEqual((kind, job), ("bgapi", session.job_uuid))
        self.assertIn(f"origination_uuid={session.channel_uuid},", command)
        self.assertIn(f"dialgw_session={session.session_uuid},", command)

    def test_answered_call(self) -> None:
        session = self.dial()
        self.feed(session, "CHANNEL_PROGRESS")
        self.clock.advance(2)
        self.feed(session, "CHANNEL_ANSWER")
        self.job(session, f"+OK {session.channel_uuid}\n".encode())
        self.clock.advance(3)
        self.feed(session, "CHANNEL_HANGUP_COMPLETE", Hangup_Cause="NORMAL_CLEARING")
        self.assertEqual(
            self.statuses(session),
            [("ringing", None), ("answered", None), ("ended", "NORMAL_CLEARING")],
        )
        self.assertEqual([t[3] for t in self.store.transitions], [0, 2, 5])
        self.assertEqual(self.pool.get("fs1").tracked, 0)
        self.assertIsNone(self.tracker.get(session.session_uuid))

    def test_early_media_ok_is_not_an_answer(self) -> None:
        session = self.dial()
        self.feed(session, "CHANNEL_PROGRESS_MEDIA")
        self.job(session, f"+OK {session.channel_uuid}\n".encode())
        self.assertEqual(self.statuses(session), [("early_media", None)])
        self.feed(session, "CHANNEL_ANSWER")
        self.assertEqual(self.statuses(session)[-1], ("answered", None))

    def test_repeated_and_late_events_change_nothing(self) -> None:
        session = self.dial()
        self.feed(session, "CHANNEL_PROGRESS", "CHANNEL_PROGRESS", "CHANNEL_ANSWER", "CHANNEL_PROGRESS_MEDIA",
                  "CHANNEL_PROGRESS", "CHANNEL_ANSWER")
        self.assertEqual(self.statuses(session), [("ringing", None), ("answered", None)])

    def test_failure_with_no_channel_events(self) -> None:
        session = self.dial()
        self.job(session, b"-ERR DESTINATION_OUT_OF_ORDER\n")
        self.assertEqual(self.statuses(session), [("ended", "DESTINATION_OUT_OF_ORDER")])
        self.assertEqual(self.pool.get("fs1").tracked, 0)

    def test_busy_hangup_then_job_result_ends_once(self) -> None:
        session = self.dial()
        self.feed(session, "CHANNEL_HANGUP_COMPLETE", Hangup_Cause="USER_BUSY")
        self.job(session, b"-ERR USER_BUSY\n")
        self.assertEqual(self.statuses(session), [("ended", "USER_BUSY")])
        self.assertEqual(self.pool.get("fs1").tracked, 0)

    def test_hangup_complete_with_repeated_cause_header(self) -> None:
        session = self.dial()
        raw = (
            f"Event-Name: CHANNEL_HANGUP_COMPLETE\nUnique-ID: {session.channel_uuid}\n"
            "Hangup-Cause: CALL_REJECTED\nCaller-Caller-ID-Name: Mallory%0AHangup-Cause%3A%20NORMAL_CLEARING\n"
            "Hangup-Cause: CALL_REJECTED\n\n"
        ).encode()
        frame = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(raw) + raw
        self.tracker.on_event(self.link, parse_event(FrameParser().feed(frame)[0]))
        self.assertEqual(self.statuses(session), [("ended", "CALL_REJECTED")])

    def test_other_calls_and_other_nodes_are_ignored(self) -> None:
        session = self.dial()
        stranger = new_session()
        self.feed(stranger, "CHANNEL_ANSWER")
        self.tracker.on_event(self.link, event("BACKGROUND_JOB", b"-ERR USER_BUSY\n", Job_UUID=str(uuid.uuid4())))
        self.feed(session, "CHANNEL_ANSWER", link=self.other_link)
        self.tracker.on_event(self.link, event("HEARTBEAT", Session_Count="3"))
        self.tracker.on_event(self.link, event("CHANNEL_ANSWER"))
        self.assertEqual(self.store.transitions, [])

    def test_events_without_variables_are_matched_by_unique_id(self) -> None:
        session = self.dial()
        self.feed(session, "CHANNEL_CALLSTATE", Channel_Call_State="RINGING")
        self.assertEqual(self.statuses(session), [])
        self.feed(session, "CHANNEL_PROGRESS")
        self.assertEqual(self.statuses(session), [("ringing", None)])

    def test_originate_on_a_node_that_is_down_ends_the_session(self) -> None:
        self.link.ready = False
        session = self.dial()
        self.assertEqual(self.link.commands, [])
        self.assertEqual(self.statuses(session), [("ended", "NORMAL_TEMPORARY_FAILURE")])
        self.assertEqual(self.pool.get("fs1").tracked, 0)

    def test_refused_bgapi_ends_the_session(self) -> None:
        self.link.bgapi_reply = "-ERR permission denied"
        session = self.dial()
        self.assertEqual(self.statuses(session), [("ended", "NORMAL_TEMPORARY_FAILURE")])


class HangupTests(TrackerTestCase):
    def test_cancel_while_ringing(self) -> None:
        session = self.dial()
        self.feed(session, "CHANNEL_PROGRESS")
        self.successResultOf(self.tracker.hangup(session.session_uuid))
        self.assertEqual(self.link.commands[-1], ("api", f"uuid_kill {session.channel_uuid} ORIGINATOR_CANCEL"))

    def test_hangup_after_answer(self) -> None:
        session = self.dial()
        self.feed(session, "CHANNEL_ANSWER")
        self.successResultOf(self.tracker.hangup(session.session_uuid))
        self.assertEqual(self.link.commands[-1], ("api", f"uuid_kill {session.channel_uuid} NORMAL_CLEARING"))

    def test_kill_racing_the_originate_is_sent_again_on_create(self) -> None:
        session = self.dial()
        self.link.api_replies["uuid_kill"] = "-ERR No such channel!\n"
        self.successResultOf(self.tracker.hangup(session.session_uuid))
        self.feed(session, "CHANNEL_CREATE")
        kills = [c for c in self.link.commands if c[0] == "api" and c[1].startswith("uuid_kill")]
        self.assertEqual(len(kills), 2)

    def test_hangup_of_unknown_session_does_nothing(self) -> None:
        self.successResultOf(self.tracker.hangup("acW68-" + str(uuid.uuid4())))
        self.assertEqual(self.link.commands, [])


class WatchdogTests(TrackerTestCase):
    def test_unconfirmed_originate_ends_after_timeout_and_grace(self) -> None:
        self.link.api_replies["uuid_exists"] = "false"
        session = self.dial()
        self.clock.advance(34.9)
        self.assertEqual(self.statuses(session), [])
        self.clock.advance(0.2)
        self.assertEqual(self.statuses(session), [("ended", "RECOVERY_ON_TIMER_EXPIRE")])

    def test_ringing_too_long_is_killed_with_no_answer(self) -> None:
        self.link.api_replies["uuid_exists"] = "true"
        session = self.dial()
        self.feed(session, "CHANNEL_PROGRESS")
        self.clock.advance(35.1)
        self.assertIn(("api", f"uuid_kill {session.channel_uuid} NO_ANSWER"), self.link.commands)
        self.feed(session, "CHANNEL_HANGUP_COMPLETE", Hangup_Cause="NO_ANSWER")
        self.assertEqual(self.statuses(session)[-1], ("ended", "NO_ANSWER"))

    def test_max_duration_second_line(self) -> None:
        self.link.api_replies["uuid_exists"] = "true"
        session = self.dial()
        self.clock.advance(10)
        self.feed(session, "CHANNEL_ANSWER")
        self.clock.advance(60 + 4.9)
        self.assertFalse([c for c in self.link.commands if "uuid_kill" in c[1]])
        self.clock.advance(0.2)
        self.assertIn(("api", f"uuid_kill {session.channel_uuid} ALLOTTED_TIMEOUT"), self.link.commands)

    def test_watchdog_waits_for_a_disconnected_node(self) -> None:
        session = self.dial()
        self.link.ready = False
        self.clock.advance(100)
        self.assertEqual(self.statuses(session), [])
        self.link.ready = True
        self.link.api_replies["uuid_exists"] = "false"
        self.clock.advance(5)
        self.assertEqual(self.statuses(session), [("ended", "RECOVERY_ON_TIMER_EXPIRE")])


class ReconcileTests(TrackerTestCase):
    def test_reconcile_catches_up_and_ends_vanished_calls(self) -> None:
        answered = self.dial()
        ringing = self.dial()
        vanished = self.dial()
        elsewhere = self.dial(fs_node="fs2")
        rows = {"row_count": 2, "rows": [
            {"uuid": answered.channel_uuid, "callstate": "ACTIVE", "answerstate": "answered"},
            {"uuid": ringing.channel_uuid, "callstate": "RINGING", "answerstate": "ringing"},
        ]}
        self.link.api_replies["show"] = json.dumps(rows)
        self.link.api_replies["uuid_exists"] = "false"
        self.successResultOf(self.tracker.reconcile(self.link))
        self.assertEqual(self.statuses(answered), [("answered", None)])
        self.assertEqual(self.statuses(ringing), [("ringing", None)])
        self.assertEqual(self.statuses(vanished), [("ended", "NORMAL_UNSPECIFIED")])
        self.assertEqual(self.statuses(elsewhere), [])
        self.assertEqual(self.pool.get("fs1").tracked, 2)

    def test_reconcile_with_no_channels(self) -> None:
        session = self.dial()
        self.link.api_replies["show"] = '{"row_count": 0}\n'
        self.link.api_replies["uuid_exists"] = "true"
        self.successResultOf(self.tracker.reconcile(self.link))
        self.assertEqual(self.statuses(session), [])

    def test_reconcile_resends_a_pending_kill(self) -> None:
        session = self.dial()
        self.link.ready = False
        self.successResultOf(self.tracker.hangup(session.session_uuid))
        self.link.ready = True
        self.link.api_replies["show"] = json.dumps({"row_count": 1, "rows": [{"uuid": session.channel_uuid, "callstate": "RINGING"}]})
        self.successResultOf(self.tracker.reconcile(self.link))
        self.assertIn(("api", f"uuid_kill {session.channel_uuid} ORIGINATOR_CANCEL"), self.link.commands)

    def test_adopted_sessions_count_and_keep_their_watchdogs(self) -> None:
        session = new_session(status="answered", started_at=0.0, answered_at=10.0)
        self.tracker.track(session, adopted=True)
        self.assertEqual(self.pool.get("fs1").tracked, 1)
        self.link.api_replies["uuid_exists"] = "true"
        self.clock.advance(10 + 60 + 5.1)
        self.assertIn(("api", f"uuid_kill {session.channel_uuid} ALLOTTED_TIMEOUT"), self.link.commands)


class ClusterTests(TrackerTestCase):
    def test_delete_of_a_session_another_node_follows(self) -> None:
        ringing = new_session(status="ringing")
        answered = new_session(status="answered")
        self.successResultOf(self.tracker.hangup_session(ringing))
        self.successResultOf(self.tracker.hangup_session(answered))
        self.assertEqual(
            self.link.commands,
            [("api", f"uuid_kill {ringing.channel_uuid} ORIGINATOR_CANCEL"),
             ("api", f"uuid_kill {answered.channel_uuid} NORMAL_CLEARING")],
        )
        self.assertEqual(self.store.transitions, [])

    def test_delete_of_an_ended_session_sends_nothing(self) -> None:
        self.successResultOf(self.tracker.hangup_session(new_session(status="ended")))
        self.assertEqual(self.link.commands, [])

    def test_adopted_sessions_are_reconciled_and_followed(self) -> None:
        alive = new_session(status="ringing")
        gone = new_session(status="answered", answered_at=0.0)
        lost_node = new_session(fs_node="fs9")
        self.link.api_replies["show"] = json.dumps(
            {"row_count": 1, "rows": [{"uuid": alive.channel_uuid, "callstate": "ACTIVE"}]}
        )
        self.link.api_replies["uuid_exists"] = "false"
        self.successResultOf(self.tracker.adopt([alive, gone, lost_node]))
        self.assertEqual(self.statuses(alive), [("answered", None)])
        self.assertEqual(self.statuses(gone), [("ended", "NORMAL_UNSPECIFIED")])
        self.assertEqual(self.statuses(lost_node), [("ended", "NORMAL_UNSPECIFIED")])
        self.assertEqual(self.pool.get("fs1").tracked, 1)
        self.feed(alive, "CHANNEL_HANGUP_COMPLETE", Hangup_Cause="NORMAL_CLEARING")
        self.assertEqual(self.statuses(alive)[-1], ("ended", "NORMAL_CLEARING"))

    def test_adopting_twice_follows_once(self) -> None:
        session = new_session(status="ringing")
        self.link.ready = False
        self.successResultOf(self.tracker.adopt([session]))
        self.successResultOf(self.tracker.adopt([session]))
        self.assertEqual(self.pool.get("fs1").tracked, 1)
