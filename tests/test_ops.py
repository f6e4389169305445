"""/healthz, /metrics and the request log, on a whole gateway."""

from __future__ import annotations

import gc
import re
import sqlite3
from collections import Counter

from prometheus_client import generate_latest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail
from twisted.internet.protocol import Factory
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from dialgw.ops import Metrics
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
        creating: Deferred = Deferred()
        create = h.store.create_session

        async def slow_create(*args):
            creating.callback(None)
            await gate
            return await create(*args)

        h.store.create_session = slow_create
        first = Deferred.fromCoroutine(h.dial("0521000006"))
        # Stop once the dial is past its checks, creating its session (a stop
        # before that answers it 503, as any new dial).
        await creating
        self.assertEqual(h.gateway.requests.in_flight, 1)
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


class RawHTTP:
    """Raw bytes to the API over loopback: what it answers, and when (on the
    harness clock) it closed the connection."""

    async def raw(self, data: bytes) -> tuple[Deferred, object]:
        """Send raw bytes to the API; fires with everything it answers."""
        from twisted.internet.endpoints import TCP4ClientEndpoint
        from twisted.internet.protocol import Protocol

        done: Deferred = Deferred()
        clock = self.h.clock

        class Collect(Protocol):
            received = b""
            closed_at: float | None = None

            def dataReceived(self, more: bytes) -> None:
                self.received += more

            def connectionLost(self, reason) -> None:
                self.closed_at = clock.seconds()
                done.callback(self.received)

        port = self.h.gateway.api_port.getHost().port
        proto = await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(_Factory(Collect))
        proto.transport.write(data)

        def close() -> Deferred | None:
            if done.called:
                return None
            proto.transport.abortConnection()
            return done

        self.addCleanup(close)
        return done, proto


class RequestLimitTests(RawHTTP, OpsTestCase):
    async def test_an_oversized_body_is_refused_before_it_is_read(self) -> None:
        head = (
            b"POST /api/v1/dial HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-Request-ID: big-1\r\nContent-Length: 10000000\r\n%s\r\n" % self.credentials()
        )
        done, proto = await self.raw(head + b"{" * 1000)
        answer = await done
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:100])
        self.assertIn(b"x-request-id: big-1", answer.lower())  # header names are case-insensitive
        # The API's answer (chunked, as every answer of the API is).
        self.assertTrue(answer.endswith(b'{"error":"body_too_large","message":"body is over 64 KiB"}\r\n0\r\n\r\n'))

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
            b"Transfer-Encoding: chunked\r\n%s\r\n" % self.credentials()
        )
        chunk = b"%x\r\n%s\r\n" % (40000, b" " * 40000)
        done, proto = await self.raw(head + chunk + chunk)
        answer = await done
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:100])

    def credentials(self, key: str | None = None) -> bytes:
        return b"X-App-ID: %s\r\nX-API-Key: %s\r\n" % (
            self.h.app.app_id.encode(), (key or self.h.key).encode()
        )

    async def test_authentication_comes_before_the_body_limit(self) -> None:
        """SPEC §1: auth (401) before body (413), and a body over the limit is
        still never read: 70 KiB declared, or sent in chunks."""
        wrong = "k" * len(self.h.key)
        declared = b"Content-Length: %d\r\n\r\n" % (70 * 1024)
        chunked = b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (40000, b" " * 40000) * 2
        session = "/api/v1/dial/acW68-00000000-0000-4000-8000-000000000000"
        cases = {
            "no credentials, declared": (b"POST /api/v1/dial", b"", declared, 401),
            "wrong key, declared": (b"POST /api/v1/dial", self.credentials(wrong), declared, 401),
            "wrong key, chunked": (b"POST /api/v1/dial", self.credentials(wrong), chunked, 401),
            "right key, declared": (b"POST /api/v1/dial", self.credentials(), declared, 413),
            "right key, chunked": (b"POST /api/v1/dial", self.credentials(), chunked, 413),
            "GET, wrong key": (b"GET " + session.encode(), self.credentials(wrong), declared, 401),
            "GET, right key": (b"GET " + session.encode(), self.credentials(), chunked, 413),
            "DELETE, malformed id": (b"DELETE /api/v1/dial/x", self.credentials(), declared, 413),
        }
        for name, (start, auth, body, status) in cases.items():
            head = start + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth
            done, proto = await self.raw(head + body)
            answer = await done
            self.assertTrue(answer.startswith(b"HTTP/1.1 %d " % status), (name, answer[:300]))
            self.assertIn(b"\r\nx-request-id: ", answer.lower(), name)
            self.assertIn(b"\r\nconnection: close\r\n", answer.lower(), name)
            # A dial's 413 is decided before the limiter: it peeks (docs/rate-limits.md).
            limited = name.startswith("right key")
            self.assertEqual(b"\r\nx-ratelimit-limit: " in answer.lower(), limited, name)
        self.assertEqual(
            [line.split()[4] for line in self.request_lines() if " /api/v1/dial" in line],
            [str(status) for _, _, _, status in cases.values()],
        )
        self.assertEqual(await self.h.store.count_live_sessions(self.h.app.app_id), 0)

    def request_lines(self) -> list[str]:
        return [
            formatEvent(line) for line in self.lines
            if line.get("log_namespace") == "dialgw.ops" and "log_format" in line
        ]

    async def test_request_headers_have_a_deadline(self) -> None:
        """A client trickling a header every 20 s (each byte would reset the
        75 s idle timeout) is answered 408 and closed well within 60 s."""
        started = self.h.clock.seconds()
        done, proto = await self.raw(b"GET /api/v1/dial/acW68-x HTTP/1.1\r\nHost: x\r\n")
        for n in range(6):
            await self.h.advance(20.0, step=1.0)
            if done.called:
                break
            proto.transport.write(b"X-Trickle-%d: y\r\n" % n)
        self.assertTrue(done.called, "still connected after 120 s of trickled headers")
        self.assertLessEqual(proto.closed_at - started, 60.0)
        answer = await done
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer[:100])
        self.assertIn(b'"request_timeout"', answer)

    async def test_an_idle_connection_waits_for_the_idle_timeout(self) -> None:
        """The header deadline starts at a request's first byte: a connection
        kept alive without a request in progress is closed by the idle timeout."""
        started = self.h.clock.seconds()
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        done, proto = await self.raw(request)
        await poll(lambda: b"HTTP/1.1 200 " in proto.received)
        await self.h.advance(70.0, step=1.0)
        self.assertFalse(done.called)
        await self.h.advance(10.0, step=1.0)
        await done
        self.assertGreaterEqual(proto.closed_at - started, 75.0)


class MetricsLabelTests(RawHTTP, GatewayTestCase):
    async def test_every_label_comes_from_a_closed_set(self) -> None:
        """Invented methods and paths add no series to /metrics."""
        requests = [b"M%04d /api/v1/dial HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in range(1500)]
        requests += [b"GET /nowhere/%d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in range(1500)]
        requests += [b"X%d /api/v1/dial/acW68-%d/events HTTP/1.1\r\nHost: x\r\n\r\n" % (n, n) for n in range(500)]
        requests.append(b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        done, _ = await self.raw(b"".join(requests))
        answers = await done
        self.assertEqual(answers.count(b"HTTP/1.1 "), len(requests))
        text = (await self.h.http.request("GET", "/metrics")).body.decode()
        closed = {
            "method": {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"},
            "route": {
                "/api/v1/dial", "/api/v1/dial/{session_uuid}", "/api/v1/dial/{session_uuid}/events",
                "/api/v1/openapi.json", "/healthz", "/metrics", "other",
            },
            "status": {"200", "202", "400", "401", "403", "404", "405", "408", "413", "415", "422", "429",
                       "500", "503", "other"},
            "outcome": {"accepted", "rejected", "rate_limited", "no_capacity", "error"},
            "limit": {"dials_per_sec", "max_concurrent", "cooldown", "other"},
            "node": {"fs1"},
            "fs_node": {"fs1"},
            "result": {"delivered", "retry", "failed"},
        }
        series = [line for line in text.splitlines() if line.startswith("dialgw_")]
        unbounded = sorted({
            f"{name}={value}"
            for line in series
            for name, value in re.findall(r'(\w+)="([^"]*)"', line)
            if name != "le" and value not in closed.get(name, ())
        })
        self.assertEqual(unbounded[:5], [], f"{len(unbounded)} label values outside the closed sets")
        self.assertLess(len(series), 120, series)
        self.assertIn(
            'dialgw_api_requests_total{method="other",route="/api/v1/dial",status="405"} 1500.0', text
        )
        self.assertIn('dialgw_api_requests_total{method="GET",route="other",status="404"} 1501.0', text)
        self.assertIn(
            'dialgw_api_requests_total{method="other",route="/api/v1/dial/{session_uuid}/events",status="405"} 500.0',
            text,
        )


class LabelTests(SynchronousTestCase):
    def test_made_up_values_are_other(self) -> None:
        metrics = Metrics()
        metrics.observe("BREW", "/api/v1/dial", 999, 0.01, None)
        metrics.observe("POST", "/api/v1/dial", 429, 0.01, "made-up")
        metrics.observe("POST", "/api/v1/dial", 429, 0.01, None)
        metrics.observe("GET", "/nowhere", 200, 0.01, None)
        text = generate_latest(metrics.registry).decode()
        for line in [
            'dialgw_api_requests_total{method="other",route="/api/v1/dial",status="other"} 1.0',
            'dialgw_api_requests_total{method="POST",route="/api/v1/dial",status="429"} 2.0',
            'dialgw_api_requests_total{method="GET",route="other",status="200"} 1.0',
            'dialgw_ratelimit_rejections_total{limit="other"} 2.0',
        ]:
            self.assertIn(line, text)


class ErrorHeapTests(RawHTTP, GatewayTestCase):
    async def answer(self, requests: list[bytes]) -> bytes:
        """Pipeline ``requests`` on one connection; all the answers."""
        done, _ = await self.raw(b"".join(requests) + b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = await done
        self.assertEqual(answers.count(b"HTTP/1.1 "), len(requests) + 1)
        return answers

    #: What an error answer could leave behind: its exception and traceback,
    #: the frames that held the request, the request and what hangs on it.
    #: (Not every object: under ``trial -j`` each log line is a message to
    #: the manager, held until it answers.)
    KINDS = frozenset({
        "ApiError", "traceback", "frame", "coroutine", "Failure", "LimitedRequest", "RequestContext", "Headers",
    })

    def objects(self) -> Counter[str]:
        gc.collect()
        kinds = (type(thing).__name__ for thing in gc.get_objects())
        return Counter(kind for kind in kinds if kind in self.KINDS)

    async def test_the_heap_is_flat_after_thousands_of_401s_and_404s(self) -> None:
        """An error answer leaves nothing behind (a module-level error
        instance raised again and again chained every traceback, and the
        requests its frames held, onto itself)."""
        unauthorized = [b"GET /api/v1/dial/malformed HTTP/1.1\r\nHost: x\r\n\r\n"] * 10_000
        auth = b"X-App-ID: %s\r\nX-API-Key: %s\r\n" % (self.h.app.app_id.encode(), self.h.key.encode())
        not_found = [b"GET /api/v1/dial/malformed HTTP/1.1\r\nHost: x\r\n%s\r\n" % auth] * 1_000
        await self.answer(unauthorized[:1000] + not_found[:100])  # warm up
        before = self.objects()
        answers = await self.answer(unauthorized)
        self.assertEqual(answers.count(b"HTTP/1.1 401 "), 10_000)
        answers = await self.answer(not_found)
        self.assertEqual(answers.count(b"HTTP/1.1 404 "), 1_001)
        grown = self.objects() - before
        self.assertLess(sum(grown.values()), 500, f"{grown} more after 11,000 error answers")


def _Factory(protocol):
    return Factory.forProtocol(protocol)
