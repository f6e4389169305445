"""Webhook delivery: the real sender, a real SQLite outbox, a real HTTP
receiver on 127.0.0.1, and a `task.Clock` for every retry and timeout."""

from __future__ import annotations

import os
import random
import sqlite3
import time
import uuid

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from twisted.internet import reactor
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.iweb import IBodyProducer

from dialgw.config import WebhookSettings
from dialgw.store import Session, open_sqlite_store
from dialgw.webhooks.sender import USER_AGENT, BodyProducer, WebhookSender
from tests.gateway import Harness, poll
from tests.receiver import start_receiver

NOW = 1_800_000_000.0


def new_session(app_id: str, metadata_json: str = '{"order":17}') -> Session:
    channel = str(uuid.uuid4())
    return Session(
        session_uuid=f"acW68-{channel}", app_id=app_id, node_id="acW68", fs_node="fs1",
        channel_uuid=channel, job_uuid=str(uuid.uuid4()), to_number="0527121102",
        from_number="0721234567", timeout_sec=30, max_duration_sec=3600,
        metadata_json=metadata_json, started_at=NOW,
    )


class SenderTestCase(TestCase):
    timeout = 120
    script = None

    async def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        directory = self.mktemp()
        os.mkdir(directory)
        self.db_path = os.path.join(directory, "dialgw.sqlite")
        self.store = await open_sqlite_store(reactor, self.db_path)
        self.addCleanup(self.store.close)
        self.receiver, self.url = await start_receiver(self, self.clock, self.script)
        self.app, _ = await self.store.create_app("hooks", self.url, ["0721234567"], NOW)
        self.sender = self.new_sender()

    def new_sender(self, **options) -> WebhookSender:
        sender = WebhookSender(
            store=self.store, reactor=reactor, clock=self.clock,
            settings=WebhookSettings(timeout_sec=10, max_attempts=options.pop("max_attempts", 10), max_age_sec=86400),
            rng=random.Random(42), **options,
        )
        sender.startService()

        async def stop():
            if sender.running:
                await sender.stopService()

        self.addCleanup(stop)
        return sender

    async def session(self, *statuses: str, metadata_json: str = '{"order":17}') -> Session:
        session = new_session(self.app.app_id, metadata_json)
        await self.store.create_session(session, NOW, None)
        previous = "dialing"
        for status in statuses:
            cause = "NORMAL_CLEARING" if status == "ended" else None
            await self.store.record_transition(session.session_uuid, previous, status, self.clock.seconds(), cause)
            previous = status
        if self.sender is not None and self.sender.running:
            self.sender.wake()  # what the call tracker does for new events
        return session

    async def events(self, session: Session):
        return await self.store.session_events(session.session_uuid)

    async def settled(self, check, timeout: float = 10.0):
        """Wait (real time, I/O only) until the async ``check()`` is true."""
        waited = 0.0
        while not await check():
            if waited > timeout:
                raise AssertionError("gave up waiting")
            await deferLater(reactor, 0.005, lambda: None)
            waited += 0.005

    async def advance_until(self, predicate, seconds: float, step: float = 0.05) -> float:
        """Advance the clock in steps until ``predicate()``; the clock time then."""
        elapsed = 0.0
        while not predicate():
            if elapsed > seconds:
                raise AssertionError(f"nothing happened within {seconds}s of clock time")
            self.clock.advance(step)
            elapsed += step
            for _ in range(3):
                await deferLater(reactor, 0, lambda: None)
            await deferLater(reactor, 0.001, lambda: None)
        return self.clock.seconds()


class BodyProducerTests(SynchronousTestCase):
    def test_the_body_is_written_at_once(self) -> None:
        body = b'{"id":"evt_1","metadata":{"x":"\xd7\xa9"}}'
        producer = BodyProducer(body)
        self.assertTrue(IBodyProducer.providedBy(producer))
        self.assertEqual(producer.length, len(body))
        transport = StringTransport()
        done = producer.startProducing(transport)
        # Written before startProducing returned, not on a later turn.
        self.assertEqual(transport.value(), body)
        self.assertIsNone(self.successResultOf(done))


class DeliveryTests(SenderTestCase):
    async def test_headers_and_body(self) -> None:
        session = await self.session(metadata_json='{"name":"שלום","n":{"a":[1,2.5,null]}}')
        await poll(lambda: self.receiver.received)
        (got,) = self.receiver.received
        (event,) = await self.events(session)
        self.assertEqual(got.headers["webhook-id"], event.event_id)
        self.assertEqual(got.headers["x-dialgw-event"], "session.dialing")
        self.assertEqual(got.headers["content-type"], "application/json")
        self.assertEqual(got.headers["user-agent"], USER_AGENT)
        self.assertEqual(got.headers["webhook-timestamp"], str(int(NOW)))
        self.assertIn('"metadata":{"name":"שלום","n":{"a":[1,2.5,null]}}'.encode(), got.body)
        body = got.json()
        self.assertEqual(
            list(body), ["id", "event", "session_uuid", "sequence", "occurred_at", "status", "to", "from", "metadata"]
        )
        self.assertEqual((body["sequence"], body["status"], body["to"], body["from"]), (1, "dialing", "0527121102", "0721234567"))
        await self.settled(lambda: self._state(session, 0, "delivered"))

    async def _state(self, session, index, state) -> bool:
        events = await self.events(session)
        return events[index].delivery_state == state

    async def test_500_twice_then_200(self) -> None:
        answers = iter([500, 503])
        self.receiver.script = lambda r: (next(answers, 200), {})
        session = await self.session()
        t1 = await self.advance_until(lambda: len(self.receiver.received) == 1, 1)
        t2 = await self.advance_until(lambda: len(self.receiver.received) == 2, 5)
        t3 = await self.advance_until(lambda: len(self.receiver.received) == 3, 10)
        self.assertTrue(1.0 <= t2 - t1 <= 2.1, t2 - t1)
        self.assertTrue(1.0 <= t3 - t2 <= 4.1, t3 - t2)
        self.assertEqual(len({r.event_id for r in self.receiver.received}), 1)
        await self.settled(lambda: self._state(session, 0, "delivered"))
        (event,) = await self.events(session)
        self.assertEqual((event.attempts, event.last_error), (3, None))
        attempts = await self.store.webhook_attempts(event.event_id)
        self.assertEqual([(a[0], a[2], a[4]) for a in attempts], [(1, 500, "retry"), (2, 503, "retry"), (3, 200, "delivered")])

    async def test_retry_after_is_honoured(self) -> None:
        answers = iter([(429, {"Retry-After": "7"})])
        self.receiver.script = lambda r: next(answers, (200, {}))
        await self.session()
        t1 = await self.advance_until(lambda: len(self.receiver.received) == 1, 1)
        t2 = await self.advance_until(lambda: len(self.receiver.received) == 2, 10)
        self.assertTrue(7.0 <= t2 - t1 <= 7.2, t2 - t1)

    async def test_410_fails_at_once(self) -> None:
        self.receiver.script = lambda r: (410, {})
        session = await self.session()
        await poll(lambda: self.receiver.received)
        await self.settled(lambda: self._state(session, 0, "failed"))
        await self.advance_until(lambda: False if self.clock.seconds() < NOW + 30 else True, 40, step=0.5)
        self.assertEqual(len(self.receiver.received), 1)
        (event,) = await self.events(session)
        self.assertEqual((event.attempts, event.last_error), (1, "HTTP 410"))

    async def test_a_redirect_is_not_followed(self) -> None:
        # A 307 would make a client that follows redirects POST the signed
        # webhook to wherever the receiver points (another host, an
        # internal address): it fails the event instead, like any 3xx.
        self.receiver.script = lambda r: (307, {"Location": self.url + "/elsewhere"})
        session = await self.session()
        await self.settled(lambda: self._state(session, 0, "failed"))
        self.assertEqual(len(self.receiver.received), 1)
        (event,) = await self.events(session)
        self.assertEqual((event.attempts, event.last_error), (1, "HTTP 307"))

    async def test_a_receiver_that_never_answers_times_out_and_is_retried(self) -> None:
        answers = iter([None])
        self.receiver.script = lambda r: next(answers, (200, {}))
        session = await self.session()
        await poll(lambda: self.receiver.received)
        t2 = await self.advance_until(lambda: len(self.receiver.received) == 2, 15)
        self.assertTrue(11.0 <= t2 - NOW <= 12.1, t2 - NOW)
        await self.settled(lambda: self._state(session, 0, "delivered"))
        attempts = await self.store.webhook_attempts((await self.events(session))[0].event_id)
        self.assertEqual(attempts[0][3], "timeout after 10s")

    async def test_max_attempts_ends_in_failed(self) -> None:
        self.receiver.script = lambda r: (500, {})
        session = await self.session()
        await self.advance_until(lambda: len(self.receiver.received) == 10, 400, step=0.5)
        await self.settled(lambda: self._state(session, 0, "failed"))
        await self.advance_until(lambda: self.clock.seconds() > NOW + 900, 1000, step=5)
        self.assertEqual(len(self.receiver.received), 10)


class OrderTests(SenderTestCase):
    async def test_a_retried_event_holds_back_its_session_only(self) -> None:
        first = {"n": 0}

        def script(received):
            body = received.json()
            if body["sequence"] == 2 and body["session_uuid"] == slow.session_uuid and first["n"] == 0:
                first["n"] += 1
                return (500, {})
            return (200, {})

        self.receiver.script = script
        self.sender.stopService()
        slow = await self.session("ringing", "answered")
        other = await self.session("ringing")
        self.sender = self.new_sender()
        # slow #1 and other #1, #2 are delivered; slow #2 failed once and waits
        await poll(lambda: len(self.receiver.received) >= 4)
        await self.settled(lambda: self._delivered(other, 2))
        self.assertEqual([r.json()["sequence"] for r in self.receiver.by_session(slow.session_uuid)], [1, 2])
        # slow #3 is not sent while #2 waits for its retry
        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(len(self.receiver.by_session(slow.session_uuid)), 2)
        await self.advance_until(lambda: len(self.receiver.by_session(slow.session_uuid)) == 4, 5)
        self.assertEqual([r.json()["sequence"] for r in self.receiver.by_session(slow.session_uuid)], [1, 2, 2, 3])
        self.assertEqual([r.json()["sequence"] for r in self.receiver.by_session(other.session_uuid)], [1, 2])

    async def _delivered(self, session, count) -> bool:
        return sum(e.delivery_state == "delivered" for e in await self.events(session)) == count


class RestartTests(SenderTestCase):
    async def test_pending_deliveries_resume_after_a_restart(self) -> None:
        self.receiver.script = lambda r: None  # hang: attempts in flight when we stop
        sessions = [await self.session("ringing") for _ in range(3)]
        await poll(lambda: len(self.receiver.received) >= 3)
        await self.sender.stopService()
        self.receiver.script = lambda r: (200, {})
        self.new_sender()
        await poll(lambda: len(self.receiver.received) >= 9)
        for session in sessions:
            await self.settled(lambda s=session: self._all_delivered(s))
        counts: dict[str, int] = {}
        for received in self.receiver.received:
            counts[received.event_id] = counts.get(received.event_id, 0) + 1
        self.assertEqual(len(counts), 6)
        self.assertTrue(all(1 <= n <= 2 for n in counts.values()), counts)

    async def _all_delivered(self, session) -> bool:
        return all(e.delivery_state == "delivered" for e in await self.events(session))

    async def test_a_lease_that_runs_out_sends_the_same_id_again(self) -> None:
        await self.sender.stopService()
        session = await self.session()
        first = await self.store.claim_due_events(NOW, 10, NOW + 300)
        self.assertEqual([d.event.session_uuid for d in first], [session.session_uuid])
        self.assertEqual(await self.store.claim_due_events(NOW + 299, 10, NOW + 600), [])
        again = await self.store.claim_due_events(NOW + 300, 10, NOW + 600)
        self.assertEqual([d.event.event_id for d in again], [first[0].event.event_id])


class BacklogTests(SenderTestCase):
    timeout = 400

    async def test_a_huge_backlog_is_read_a_page_at_a_time(self) -> None:
        await self.sender.stopService()
        self.receiver.script = lambda r: (503, {})
        total = 100_000
        with sqlite3.connect(self.db_path) as db:
            sessions = [(f"acW68-{uuid.uuid4()}",) for _ in range(total // 5)]
            db.executemany(
                "INSERT INTO sessions (session_uuid, app_id, node_id, fs_node, channel_uuid, job_uuid, "
                "to_number, from_number, timeout_sec, max_duration_sec, metadata_json, status, started_at) "
                f"VALUES (?, '{self.app.app_id}', 'acW68', 'fs1', substr(?1, 7), NULL, '0527121102', "
                "'0721234567', 30, 3600, '{}', 'ended', 0)",
                sessions,
            )
            db.executemany(
                "INSERT INTO session_events (event_id, session_uuid, sequence, event, status, occurred_at, "
                "delivery_state, attempts, next_attempt_at) VALUES (?, ?, ?, 'session.dialing', 'dialing', ?, "
                "'pending', 0, ?)",
                (
                    (f"evt_{uuid.uuid4().hex}", sid, seq, NOW, NOW)
                    for (sid,) in sessions
                    for seq in range(1, 6)
                ),
            )
        self.assertEqual(await self.store.count_pending_events(), total)
        sender = self.new_sender(max_in_flight=50)
        await poll(lambda: len(self.receiver.received) >= 200, timeout=60)
        self.assertLessEqual(sender.peak_in_flight, 50)
        # Only the first event of each session is ever due: never event 2+.
        self.assertEqual({r.json()["sequence"] for r in self.receiver.received}, {1})
        # The receiver comes back: the backlog drains, page by page. Deliveries
        # pull the next page themselves; the clock only has to reach the
        # retries of the first refused attempts.
        self.receiver.script = lambda r: (200, {})
        self.clock.advance(600)
        sender.wake()
        # No deadline on the whole drain (a loaded machine is slower, not
        # wrong): it fails only if the backlog stops shrinking for 60 rounds.
        pending, stalled = total, 0
        while pending and stalled < 60:
            await deferLater(reactor, 0.5, lambda: None)
            self.clock.advance(2.0)  # retries of attempts caught by the jump above
            left = await self.store.count_pending_events()
            stalled = stalled + 1 if left >= pending else 0
            pending = left
        self.assertEqual(pending, 0)
        self.assertLessEqual(sender.peak_in_flight, 50)
        self.assertEqual(len({r.event_id for r in self.receiver.received if r.json()["sequence"] == 5}), total // 5)


class EndToEndTests(TestCase):
    """A whole call through the gateway, every webhook verified by the
    ``standardwebhooks`` library (not our code)."""

    timeout = 60

    async def setUp(self) -> None:
        self.h = Harness(self, start=time.time())
        self.receiver, self.url = await start_receiver(self, self.h.clock)
        port = await self.h.start_simulator()
        await self.h.start_gateway(port)
        self.h.app, self.h.key = await self.h.store.create_app("hooks", self.url, ["0721234567"], self.h.clock.seconds())

    async def test_a_call_produces_every_webhook_signed_and_in_order(self) -> None:
        h = self.h
        metadata = '{"crm":{"id":"ש-17","tags":["a","b"]},"n":1.5,"ok":true}'
        reply = await h.http.request(
            "POST", "/api/v1/dial", {**h.auth(), "Content-Type": "application/json"},
            b'{"to":"0521000001","from":"0721234567","metadata":' + metadata.encode() + b"}",
        )
        sid = reply.json()["session_uuid"]
        await poll(lambda: sid[6:] in h.simulator.calls)
        await h.advance(1.1)
        await h.status(sid, "answered")
        await h.advance(3.2)
        await h.status(sid, "ended")
        await poll(lambda: len(self.receiver.received) == 4)
        got = self.receiver.received
        self.assertEqual([r.headers["x-dialgw-event"] for r in got],
                         ["session.dialing", "session.ringing", "call.answered", "call.hangup"])
        verifier = Webhook(h.app.webhook_secret)
        for number, received in enumerate(got, 1):
            verifier.verify(received.body, received.headers)
            body = received.json()
            self.assertEqual((body["sequence"], body["session_uuid"], body["id"]), (number, sid, received.event_id))
            self.assertIn(b'"metadata":' + metadata.encode(), received.body)
        hangup = got[-1].json()
        self.assertEqual((hangup["hangup_cause"], hangup["duration_sec"]), ("NORMAL_CLEARING", 3))
        self.assertNotIn("hangup_cause", got[0].json())
        # The pull-side view agrees.
        await poll(lambda: True)
        events = (await h.http.request("GET", f"/api/v1/dial/{sid}/events", h.auth())).json()["events"]
        await poll(lambda: True)
        self.assertEqual([e["id"] for e in events], [r.event_id for r in got])

    async def test_both_secrets_sign_during_a_rotation(self) -> None:
        h = self.h
        old = h.app.webhook_secret
        new = await h.store.rotate_webhook_secret(h.app.app_id, h.clock.seconds())
        await h.dial("0521000007")
        await poll(lambda: len(self.receiver.received) >= 1)
        received = self.receiver.received[0]
        self.assertEqual(len(received.headers["webhook-signature"].split(" ")), 2)
        Webhook(old).verify(received.body, received.headers)
        Webhook(new).verify(received.body, received.headers)
        with self.assertRaises(WebhookVerificationError):
            Webhook("whsec_" + "A" * 43 + "=").verify(received.body, received.headers)
        tampered = received.body.replace(b"0521000007", b"0521000008")
        with self.assertRaises(WebhookVerificationError):
            Webhook(new).verify(tampered, received.headers)
