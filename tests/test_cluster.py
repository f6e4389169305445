"""Cluster mode: two gateway nodes, one PostgreSQL, one Redis, one switch.

Real servers on loopback: a private redis-server, a fresh PostgreSQL
database, the simulator; one `task.Clock` drives every timer.
"""

from __future__ import annotations

import json

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from dialgw.cluster import PRESENCE_TTL_SEC
from dialgw.config import parse_config
from dialgw.service import GatewayService
from tests import pg
from tests.gateway import Harness, poll
from tests.receiver import start_receiver
from tests.redis_server import RedisServer
from tests.support import HTTPClient


class Node:
    def __init__(self, gateway: GatewayService) -> None:
        self.gateway = gateway
        self.http = None


class ClusterTestCase(TestCase):
    timeout = 90

    async def setUp(self) -> None:
        self.redis = RedisServer(self)
        self.redis.start()
        self.dsn = pg.create_database(self)
        self.h = Harness(self)
        self.sim_port = await self.h.start_simulator()
        self.receiver, self.hook_url = await start_receiver(self, self.h.clock)
        self.a = await self.start_node("nodeA")
        self.b = await self.start_node("nodeB")
        self.app, self.key = await self.a.gateway.store.create_app(
            "cluster", self.hook_url, ["0721234567"], self.h.clock.seconds()
        )
        await self.a.gateway.store.update_app(self.app.app_id, burst=10, dials_per_sec=0.001)

    async def start_node(self, node_id: str) -> Node:
        text = (
            f"[node]\nid = {node_id}\n"
            "[api]\nlisten = tcp:0:interface=127.0.0.1\n"
            f"[database]\nbackend = postgresql\ndsn = {self.dsn}\n"
            f"[freeswitch:fs1]\nendpoint = tcp:host=127.0.0.1:port={self.sim_port}\n"
            "heartbeat_sec = 20\nmax_cps = 1000\n"
            "[ratelimit]\nbackend = redis\nmax_concurrent = 3\n"
            f"[redis]\nurl = {self.redis.url}\n"
        )
        gateway = GatewayService(parse_config(text), reactor, self.h.clock)
        gateway.startService()
        await gateway.ready
        node = Node(gateway)

        async def stop() -> None:
            if gateway.running:
                await gateway.stopService()

        self.addCleanup(stop)
        node.http = HTTPClient(self, f"http://127.0.0.1:{gateway.api_port.getHost().port}")
        await poll(lambda: gateway.connections["fs1"].ready)
        await poll(lambda: gateway.presence is not None and gateway.presence.announced)
        return node

    def auth(self) -> dict[str, str]:
        return {"X-App-ID": self.app.app_id, "X-API-Key": self.key, "Content-Type": "application/json"}

    async def dial(self, node: Node, to: str, headers: dict[str, str] | None = None):
        body = json.dumps({"to": to, "from": "0721234567"}).encode()
        return await node.http.request("POST", "/api/v1/dial", {**self.auth(), **(headers or {})}, body)

    async def wait_status(self, node: Node, sid: str, status: str) -> dict:
        async def reached() -> dict | None:
            body = (await node.http.request("GET", f"/api/v1/dial/{sid}", self.auth())).json()
            return body if body["status"] == status else None

        for _ in range(2000):
            body = await reached()
            if body is not None:
                return body
            await self.h.advance(0.05, step=0.05)
        raise AssertionError(f"{sid} never reached {status}")


class SharedStateTests(ClusterTestCase):
    async def test_burst_and_concurrency_are_shared(self) -> None:
        await self.a.gateway.store.update_app(self.app.app_id, max_concurrent=100)
        replies = [await self.dial(self.a if i % 2 else self.b, "0521000006") for i in range(12)]
        self.assertEqual([r.status for r in replies], [202] * 10 + [429] * 2)
        self.assertEqual(replies[-1].json()["limit"], "dials_per_sec")

    async def test_max_concurrent_counts_both_nodes(self) -> None:
        replies = [await self.dial(self.a if i % 2 else self.b, "0521000006") for i in range(4)]
        self.assertEqual([r.status for r in replies], [202, 202, 202, 429])
        self.assertEqual(replies[-1].json()["limit"], "max_concurrent")

    async def test_any_node_serves_any_session(self) -> None:
        sid = (await self.dial(self.a, "0521000006")).json()["session_uuid"]
        self.assertTrue(sid.startswith("nodeA-"))
        await self.wait_status(self.b, sid, "answered")
        events = await self.b.http.request("GET", f"/api/v1/dial/{sid}/events", self.auth())
        self.assertEqual(events.status, 200)
        cancel = await self.b.http.request("DELETE", f"/api/v1/dial/{sid}", self.auth())
        self.assertEqual(cancel.status, 202)
        body = await self.wait_status(self.a, sid, "ended")
        self.assertEqual(body["hangup_cause"], "NORMAL_CLEARING")

    async def test_one_key_on_both_nodes_places_one_call(self) -> None:
        await self.a.gateway.store.update_app(self.app.app_id, burst=50, max_concurrent=50)
        requests = [
            Deferred.fromCoroutine(self.dial(self.a if i % 2 else self.b, "0521000006", {"Idempotency-Key": "one"}))
            for i in range(20)
        ]
        replies = await gatherResults(requests)
        self.assertEqual({r.status for r in replies}, {202})
        self.assertEqual(len({r.json()["session_uuid"] for r in replies}), 1)
        await poll(lambda: len(self.h.simulator.calls) >= 1)
        originates = [c for c in self.h.simulator.commands if c.startswith("bgapi originate")]
        self.assertEqual(len(originates), 1)


class AdoptionTests(ClusterTestCase):
    async def test_a_dead_nodes_calls_are_adopted_and_their_webhooks_arrive_once(self) -> None:
        sid = (await self.dial(self.a, "0521000006")).json()["session_uuid"]
        await self.wait_status(self.b, sid, "answered")
        await poll(lambda: len(self.receiver.by_session(sid)) >= 3)
        ttl = int(self.redis.command("PTTL", "dialgw:node:nodeA"))
        self.assertTrue(0 < ttl <= PRESENCE_TTL_SEC * 1000, ttl)
        await self.a.gateway.stopService()  # node A dies mid-call
        # Its presence key expires (Redis's own clock: expire it now); node B
        # notices at its next round and takes the session over.
        self.redis.command("DEL", "dialgw:node:nodeA")
        for _ in range(int(PRESENCE_TTL_SEC / 0.1)):
            await self.h.advance(0.1, step=0.1)
            session = await self.b.gateway.store.get_session(sid)
            if session.node_id == "nodeB":
                break
        self.assertEqual(session.node_id, "nodeB")
        # The claim is committed before node B's tracker follows the call: a
        # hangup in between would be an event nobody follows, and the call
        # would end as vanished (NORMAL_UNSPECIFIED), as the README says.
        await poll(lambda: self.b.gateway.tracker.get(sid) is not None)
        self.h.simulator.hangup(sid[6:], "NORMAL_CLEARING")  # the far end hangs up
        body = await self.wait_status(self.b, sid, "ended")
        self.assertEqual(body["hangup_cause"], "NORMAL_CLEARING")
        await poll(lambda: len(self.receiver.by_session(sid)) >= 4)
        for _ in range(50):
            await self.h.advance(0.1, step=0.1)
        kinds = [r.json()["event"] for r in self.receiver.by_session(sid)]
        self.assertEqual(kinds, ["session.dialing", "session.ringing", "call.answered", "call.hangup"])
