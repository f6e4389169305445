"""Faults and abuse: the gateway keeps its promises when things break.

Whole gateway, real sockets, the simulator, real SQLite; `task.Clock` time.
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred

from tests.gateway import GatewayTestCase
from tests.support import Changes


class FaultTestCase(GatewayTestCase):

    def originates(self) -> list[str]:
        return [c for c in self.h.simulator.commands if c.startswith("bgapi originate")]


class LostOriginateTests(FaultTestCase):
    async def test_a_job_result_that_never_comes_ends_at_the_ring_timeout(self) -> None:
        """The switch took the bgapi but never ran it: no channel, no job."""
        h = self.h
        execute = h.simulator.execute_api
        h.simulator.execute_api = lambda name, arg, deliver: (
            None if name == "originate" else execute(name, arg, deliver)
        )
        sid = (await h.dial("0521000006", timeout_sec=5)).json()["session_uuid"]
        await h.until(self.originates)
        await h.advance(9.5, step=0.5)
        self.assertEqual((await h.get(sid))["status"], "dialing")
        await h.advance(1.0, step=0.25)  # timeout_sec + 5 s of grace
        session = await h.status(sid, "ended")
        self.assertEqual(session.hangup_cause, "RECOVERY_ON_TIMER_EXPIRE")
        self.assertEqual(await h.history(sid), [("dialing", None), ("ended", "RECOVERY_ON_TIMER_EXPIRE")])

    async def test_a_dropped_connection_before_the_reply_is_reconciled(self) -> None:
        """The connection dies right after the originate: the call still lives."""
        h = self.h
        sid = await h.placed("0521000006")
        h.simulator.drop_connections()
        await h.node_ready(ready=False)
        await h.advance(2.0, step=0.25)
        await h.node_ready()
        session = await h.status(sid, "answered")
        self.assertEqual(session.status, "answered")


class StoreFailureTests(FaultTestCase):
    async def test_a_full_disk_places_no_call_and_writes_no_half_session(self) -> None:
        h = self.h
        await h.store.update_app(h.app.app_id, burst=1000, dials_per_sec=1000, max_concurrent=1000)
        pool = h.store._pool
        pages = await pool.runQuery("PRAGMA page_count")
        await pool.runOperation(f"PRAGMA max_page_count = {pages[0][0]}")
        statuses = []
        for _ in range(40):
            reply = await h.http.request(
                "POST", "/api/v1/dial", {**h.auth(), "Content-Type": "application/json"},
                json.dumps({"to": "0521000006", "from": "0721234567",
                            "metadata": {"pad": "x" * 3000}}).encode(),
            )
            statuses.append(reply.status)
            if reply.status != 202:
                self.assertIn(reply.status, (500, 503))
                self.assertNotIn(b"Traceback", reply.body)
                self.assertNotIn(b"disk", reply.body)
        self.assertIn(500, statuses)
        accepted = statuses.count(202)
        rows = await pool.runQuery("SELECT COUNT(*) FROM sessions")
        events = await pool.runQuery("SELECT COUNT(DISTINCT session_uuid) FROM session_events")
        self.assertEqual((rows[0][0], events[0][0]), (accepted, accepted))
        await h.until(lambda: len(self.originates()) == accepted)
        self.assertEqual(h.gateway.pool.get("fs1").tracked, accepted)
        self.flushLoggedErrors()


class InjectionTests(FaultTestCase):
    BAD = [
        "0521000006\n\napi system touch /tmp/x\n\n",
        "0521000006\r\n",
        "0521000006,execute_on_answer=system",
        "0521000006}&system(x)",
        "0521000006'",
        "05210000\x0006",
        "0521000006\u2028",
        "０５２１０００００６",
        "+972521000006",
        "1-800-123456",
        "100",
    ]

    async def test_nothing_but_validated_digits_reaches_the_socket(self) -> None:
        h = self.h
        before = bytes(h.simulator.received)
        for value in self.BAD:
            for field in ("to", "from"):
                body = {"to": "0521000006", "from": "0721234567", field: value}
                reply = await h.http.request(
                    "POST", "/api/v1/dial", {**h.auth(), "Content-Type": "application/json"},
                    json.dumps(body).encode(),
                )
                self.assertEqual((reply.status, reply.json()["error"]), (400, "invalid_number"), (field, value))
        await h.advance(1.0)
        sent = bytes(h.simulator.received)[len(before):]
        self.assertNotIn(b"originate", sent)
        self.assertNotIn(b"system", sent)


class AuthTests(FaultTestCase):
    async def test_a_deleted_app_is_refused_at_once(self) -> None:
        h = self.h
        sid = await h.placed("0521000006")
        await h.store.update_app(h.app.app_id, enabled=False)
        self.assertEqual((await h.http.request("GET", f"/api/v1/dial/{sid}", h.auth())).status, 401)
        await h.store.update_app(h.app.app_id, enabled=True)
        self.assertEqual((await h.http.request("GET", f"/api/v1/dial/{sid}", h.auth())).status, 200)
        await h.store.delete_app(h.app.app_id)
        reply = await h.http.request("GET", f"/api/v1/dial/{sid}", h.auth())
        self.assertEqual((reply.status, reply.json()["error"]), (401, "unauthorized"))
        reply = await h.dial("0521000006", expect=401)
        self.assertEqual(len(self.originates()), 1)


class AbuseTests(FaultTestCase):
    async def test_very_long_header_values_get_a_clean_error(self) -> None:
        h = self.h
        for name in ("X-Request-ID", "Idempotency-Key", "X-App-ID", "X-Custom"):
            reply = await h.http.request(
                "POST", "/api/v1/dial",
                {**h.auth(), "Content-Type": "application/json", name: "v" * 10000},
                b'{"to":"0521000006","from":"0721234567"}',
            )
            self.assertIn(reply.status, (202, 400, 401), name)
            self.assertIn(reply.headers["content-type"], "application/json")
            self.assertNotIn(b"Traceback", reply.body)
            if name == "X-Request-ID":
                self.assertNotEqual(reply.headers["x-request-id"], "v" * 10000)
        # A header line over twisted.web's 16 KiB line limit: the connection is
        # closed (twisted.web answers nothing to it), and the gateway goes on.
        from twisted.internet import reactor
        from twisted.internet.endpoints import TCP4ClientEndpoint
        from twisted.internet.protocol import Factory, Protocol

        done: Deferred = Deferred()

        class Collect(Protocol):
            data = b""

            def dataReceived(self, more: bytes) -> None:
                self.data += more

            def connectionLost(self, reason) -> None:
                done.callback(self.data)

        port = h.gateway.api_port.getHost().port
        proto = await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(Collect))
        proto.transport.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"v" * 20000 + b"\r\n\r\n")
        answer = await done
        self.assertTrue(answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:80])
        self.assertEqual((await h.http.request("GET", "/healthz")).status, 200)

    async def test_idle_connections_are_closed(self) -> None:
        from twisted.internet import reactor
        from twisted.internet.endpoints import TCP4ClientEndpoint
        from twisted.internet.protocol import Factory, Protocol

        closed: list[int] = []
        closing = Changes()

        class Idle(Protocol):
            def connectionLost(self, reason) -> None:
                closed.append(1)
                closing()

        port = self.h.gateway.api_port.getHost().port
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        clients = [await endpoint.connect(Factory.forProtocol(Idle)) for _ in range(500)]
        self.addCleanup(lambda: [c.transport.abortConnection() for c in clients if c.transport.connected])
        await self.h.advance(80.0, step=5.0)
        await closing.until(lambda: len(closed) == len(clients), timeout=20)
        # The API still answers.
        self.assertEqual((await self.h.http.request("GET", "/healthz")).status, 200)
