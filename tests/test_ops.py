"""/healthz, /metrics and the request log, on a whole gateway."""

from __future__ import annotations

import sqlite3

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail
from twisted.internet.protocol import Factory
from twisted.logger import formatEvent, globalLogPublisher

from dialgw.store import open_sqlite_store
from tests.gateway import GatewayTestCase, poll
from tests.support import HTTPClient


class OpsTestCase(GatewayTestCase):
    async def setUp(self) -> None:
        await super().setUp()
        self.lines: list[dict] = []
        globalLogPublisher.addObserver(self.lines.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.lines.append)


class HealthTests(OpsTestCase):
    async def test_healthy(self) -> None:
        reply = await self.h.http.request("GET", "/healthz")
        self.assertEqual(reply.status, 200)
        body = reply.json()
        self.assertEqual(
            (body["status"], body["database"], body["freeswitch"], body["accepting_dials"], body["node"]),
            ("ok", "ok", {"fs1": "ready"}, True, "acW68"),
        )
        self.assertEqual(reply.headers["content-type"], "application/json")

    async def test_no_switch_is_unavailable(self) -> None:
        await self.h.stop_simulator()
        await self.h.node_ready(ready=False)
        reply = await self.h.http.request("GET", "/healthz")
        self.assertEqual(reply.status, 503)
        self.assertEqual((reply.json()["status"], reply.json()["freeswitch"]), ("unavailable", {"fs1": "disconnected"}))

    async def test_no_database_is_unavailable(self) -> None:
        self.h.store.ping = lambda: fail(sqlite3.OperationalError("disk I/O error"))
        reply = await self.h.http.request("GET", "/healthz")
        self.assertEqual(reply.status, 503)
        self.assertEqual(reply.json()["database"], "error: OperationalError")


class MetricsTests(OpsTestCase):
    async def test_metrics_after_a_call(self) -> None:
        h = self.h
        sid = await h.placed("0521000006")
        await h.advance(1.1)
        await h.status(sid, "answered")
        await h.dial("0521000001", expect=400, to_unknown_field=1)
        reply = await h.http.request("GET", "/metrics")
        self.assertEqual(reply.status, 200)
        text = reply.body.decode()
        for line in [
            'dialgw_dials_total{outcome="accepted"} 1.0',
            'dialgw_dials_total{outcome="rejected"} 1.0',
            'dialgw_api_requests_total{method="POST",route="/api/v1/dial",status="202"} 1.0',
            'dialgw_fs_node_connected{node="fs1"} 1.0',
            'dialgw_fs_node_free_channels{node="fs1"} 199.0',
            'dialgw_live_sessions{fs_node="fs1",status="answered"} 1.0',
            "dialgw_redis_degraded 0.0",
        ]:
            self.assertIn(line, text)
        self.assertIn('dialgw_api_request_seconds_bucket{le="+Inf",route="/api/v1/dial"} 2.0', text)
        self.assertIn("dialgw_webhook_backlog", text)


class RateLimitMetricsTests(OpsTestCase):
    async def test_rejections_are_counted_by_limit(self) -> None:
        h = self.h
        await h.store.update_app(h.app.app_id, burst=1, dials_per_sec=0.01)
        await h.dial("0521000006")
        await h.dial("0521000006", expect=429)
        text = (await h.http.request("GET", "/metrics")).body.decode()
        self.assertIn('dialgw_ratelimit_rejections_total{limit="dials_per_sec"} 1.0', text)
        self.assertIn('dialgw_dials_total{outcome="rate_limited"} 1.0', text)


class RequestLogTests(OpsTestCase):
    async def test_one_line_per_request_without_secrets(self) -> None:
        h = self.h
        reply = await h.http.request(
            "GET", "/api/v1/dial/acW68-00000000-0000-4000-8000-000000000000",
            {**h.auth(), "X-Request-ID": "trace-42"},
        )
        self.assertEqual(reply.status, 404)
        text = [
            line["log_format"].format(**line)
            for line in self.lines
            if line.get("log_namespace") == "dialgw.ops" and "log_format" in line
        ]
        self.assertEqual(len(text), 1, text)
        self.assertRegex(text[0], rf"^trace-42 {h.app.app_id} GET /api/v1/dial/acW68-0+-0+-4000-8000-0+ 404 [0-9.]+ms$")
        # Nothing else logs the request (Twisted's own access log is off).
        mentions = [formatEvent(line) for line in self.lines if "acW68-00000000" in formatEvent(line)]
        self.assertEqual(len(mentions), 1, mentions)
        everything = repr(self.lines)
        self.assertNotIn(h.key, everything)
        self.assertNotIn(h.app.webhook_secret, everything)


class MetricsOffTests(OpsTestCase):
    api = {"metrics": "no"}

    async def test_metrics_can_be_turned_off(self) -> None:
        reply = await self.h.http.request("GET", "/metrics", self.h.auth())
        self.assertEqual(reply.status, 404)
        self.assertEqual((await self.h.http.request("GET", "/healthz")).status, 200)


class AdminListenTests(OpsTestCase):
    api = {"admin_listen": "tcp:0:interface=127.0.0.1"}

    async def test_health_and_metrics_on_their_own_endpoint(self) -> None:
        admin = HTTPClient(self, f"http://127.0.0.1:{self.h.gateway.admin_port.getHost().port}")
        self.assertEqual((await admin.request("GET", "/healthz")).status, 200)
        self.assertEqual((await admin.request("GET", "/metrics")).status, 200)
        self.assertEqual((await admin.request("GET", "/api/v1/dial/x")).status, 404)
        self.assertEqual((await self.h.http.request("GET", "/healthz")).status, 404)


class ShutdownTests(OpsTestCase):
    async def test_sigterm_drains(self) -> None:
        """In-flight request finishes, new dials get 503, the outbox is intact."""
        h = self.h
        gate: Deferred = Deferred()
        create = h.store.create_session

        async def slow_create(*args):
            await gate
            return await create(*args)

        h.store.create_session = slow_create
        first = Deferred.fromCoroutine(h.dial("0521000006"))
        await poll(lambda: h.gateway.requests.in_flight == 1)
        stopping = h.gateway.stopService()
        refused = await h.dial("0521000006", expect=503)
        self.assertEqual(refused.json()["error"], "no_fs_capacity")
        self.assertFalse(stopping.called)
        gate.callback(None)
        accepted = await first
        self.assertEqual(accepted.status, 202)
        await stopping
        sid = accepted.json()["session_uuid"]
        store = await open_sqlite_store(reactor, h.db_path)
        self.addCleanup(store.close)
        events = await store.session_events(sid)
        self.assertEqual([(e.event, e.delivery_state) for e in events][:1], [("session.dialing", "pending")])


class RequestLimitTests(OpsTestCase):
    async def raw(self, data: bytes) -> tuple[Deferred, object]:
        """Send raw bytes to the API; fires with everything it answers."""
        from twisted.internet.endpoints import TCP4ClientEndpoint
        from twisted.internet.protocol import Protocol

        done: Deferred = Deferred()

        class Collect(Protocol):
            received = b""

            def dataReceived(self, more: bytes) -> None:
                self.received += more

            def connectionLost(self, reason) -> None:
                done.callback(self.received)

        port = self.h.gateway.api_port.getHost().port
        proto = await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(_Factory(Collect))
        proto.transport.write(data)
        return done, proto

    async def test_an_oversized_body_is_refused_before_it_is_read(self) -> None:
        head = (
            b"POST /api/v1/dial HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-Request-ID: big-1\r\nContent-Length: 10000000\r\n\r\n"
        )
        done, proto = await self.raw(head + b"{" * 1000)
        answer = await done
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:100])
        self.assertIn(b"X-Request-ID: big-1", answer)
        self.assertTrue(answer.endswith(b'{"error":"body_too_large","message":"body is over 64 KiB"}'))

    async def test_a_trickled_body_times_out(self) -> None:
        head = (
            b"POST /api/v1/dial HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        done, proto = await self.raw(head + b'{"to"')
        await poll(lambda: any("_too_slow" in repr(c) for c in self.h.clock.getDelayedCalls()))
        for _ in range(29):  # a byte a second: every byte would reset an idle timeout
            proto.transport.write(b" ")
            await self.h.advance(1.0, step=1.0)
        self.assertFalse(done.called)
        await self.h.advance(1.5, step=0.5)
        answer = await done
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer[:100])
        self.assertIn(b'"request_timeout"', answer)

    async def test_chunked_bodies_are_counted_too(self) -> None:
        head = (
            b"POST /api/v1/dial HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (40000, b" " * 40000)
        done, proto = await self.raw(head + chunk + chunk)
        answer = await done
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:100])


def _Factory(protocol):
    return Factory.forProtocol(protocol)
