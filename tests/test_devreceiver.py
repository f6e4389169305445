"""The development webhook receiver, over real loopback HTTP."""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred
from twisted.logger import Logger, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from dialgw import devreceiver
from dialgw.devreceiver import WebhookLog
from tests.support import HTTPClient, listen_http, with_timeout

ANSWERED = {
    "id": "evt_01", "event": "call.answered", "session_uuid": "s-1", "sequence": 4,
    "occurred_at": "2026-11-26T14:00:00.123Z", "status": "answered",
    "to": "0527121102", "from": "0721234567", "metadata": {"שם": "דוד"},
}
HANGUP = {
    **ANSWERED, "id": "evt_02", "event": "call.hangup", "sequence": 5, "status": "ended",
    "hangup_cause": "NORMAL_CLEARING", "duration_sec": 17,
}


class WebhookLogTests(TestCase):
    async def start(self, **kwargs) -> tuple[WebhookLog, HTTPClient, list[dict]]:
        events: list[dict] = []
        receiver = WebhookLog(logger=Logger(observer=events.append), **kwargs)
        client = HTTPClient(self, await listen_http(self, receiver))
        return receiver, client, events

    async def post(self, client, webhook, webhook_id="evt_01"):
        body = webhook if isinstance(webhook, bytes) else json.dumps(webhook).encode()
        headers = {
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": "1795701600",
            "webhook-signature": "v1,bm90IGNoZWNrZWQ=",
        }
        request = client.request("POST", "/hooks", headers, body)
        return await with_timeout(Deferred.fromCoroutine(request))

    async def test_webhook_is_logged_in_one_line_and_answered_204(self):
        receiver, client, events = await self.start()
        reply = await self.post(client, ANSWERED)
        self.assertEqual((reply.status, reply.body), (204, b""))
        self.assertEqual(
            [formatEvent(event) for event in events],
            ["webhook call.answered s-1 #4 status=answered id=evt_01"],
        )
        self.assertEqual(events[0]["session_uuid"], "s-1")

    async def test_hangup_line_has_cause_and_duration(self):
        receiver, client, events = await self.start()
        reply = await self.post(client, HANGUP, webhook_id="evt_02")
        self.assertEqual(reply.status, 204)
        self.assertEqual(
            [formatEvent(event) for event in events],
            [
                "webhook call.hangup s-1 #5 status=ended"
                " cause=NORMAL_CLEARING duration=17s id=evt_02"
            ],
        )

    async def test_received_keeps_headers_and_raw_body(self):
        receiver, client, events = await self.start()
        body = json.dumps(ANSWERED, ensure_ascii=False).encode("utf-8")
        await self.post(client, body)
        [(headers, received)] = receiver.received
        self.assertEqual(received, body)
        self.assertEqual(headers["webhook-id"], "evt_01")
        self.assertEqual(headers["content-type"], "application/json")

    async def test_received_keeps_only_the_last(self):
        receiver, client, events = await self.start(keep=2)
        for sequence in (1, 2, 3):
            await self.post(client, {**ANSWERED, "sequence": sequence})
        self.assertEqual([json.loads(body)["sequence"] for _, body in receiver.received], [2, 3])
        self.assertEqual(WebhookLog().received.maxlen, 1000)

    async def test_garbage_gets_400_and_a_log_line(self):
        receiver, client, events = await self.start()
        for name, body in [
            ("not json", b"{nope"),
            ("not utf-8", b'"\xff"'),
            ("not an object", b"[1,2]"),
            ("empty", b""),
        ]:
            with self.subTest(name):
                del events[:]
                reply = await self.post(client, body, webhook_id="evt_bad")
                self.assertEqual(reply.status, 400, name)
                self.assertEqual(len(events), 1, name)
                self.assertIn("evt_bad", formatEvent(events[0]))
                self.assertIn("not a JSON object", formatEvent(events[0]))

    async def test_get_is_405(self):
        receiver, client, events = await self.start()
        reply = await with_timeout(Deferred.fromCoroutine(client.request("GET", "/hooks")))
        self.assertEqual(reply.status, 405)
        self.assertIn("POST", reply.headers["allow"])
        self.assertEqual((list(receiver.received), events), ([], []))

    async def test_logs_through_the_module_logger_by_default(self):
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        client = HTTPClient(self, await listen_http(self, WebhookLog()))
        await self.post(client, ANSWERED)
        lines = [
            formatEvent(event)
            for event in events
            if event.get("log_namespace") == devreceiver.log.namespace
        ]
        self.assertEqual(lines, ["webhook call.answered s-1 #4 status=answered id=evt_01"])
