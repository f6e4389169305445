"""The service tree `makeService` builds: named children, no I/O, nothing started."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from dialgw.config import parse_config
from dialgw.esl.client import NodeConnection
from dialgw.limits import MemoryLimiter, RedisConnection, RedisLimiter
from dialgw.service import AfterStore, GatewayService, Options, StoreService

ROOT = Path(__file__).resolve().parents[1]

BASE = (
    "[node]\nid = acW68\n"
    "[api]\nlisten = tcp:0:interface=127.0.0.1\n{api}"
    "[database]\n{database}"
    "[freeswitch:fs1]\nendpoint = tcp:host=127.0.0.1:port=8021\n"
    "[freeswitch:fs2]\nendpoint = tcp:host=127.0.0.1:port=8022\n"
    "{extra}"
)


def tree(api: str = "", database: str = "path = /nonexistent/dialgw.sqlite\n", extra: str = "") -> GatewayService:
    settings = parse_config(BASE.format(api=api, database=database, extra=extra))
    return GatewayService(settings, reactor, Clock())


def names(service: MultiService) -> list[str]:
    return [child.name for child in service]


class TreeTests(SynchronousTestCase):
    def test_one_node_gateway(self) -> None:
        gateway = tree()
        self.assertEqual(names(gateway), ["store", "esl", "webhooks", "backlog", "api"])
        self.assertFalse(gateway.running)
        self.assertIsInstance(gateway.getServiceNamed("store"), StoreService)
        esl = gateway.getServiceNamed("esl")
        self.assertEqual(names(esl), ["fs1", "fs2"])
        self.assertTrue(all(isinstance(child, NodeConnection) for child in esl))
        self.assertEqual(gateway.connections, {"fs1": esl.getServiceNamed("fs1"), "fs2": esl.getServiceNamed("fs2")})
        self.assertEqual([node.name for node in gateway.pool], ["fs1", "fs2"])
        self.assertIsInstance(gateway.getServiceNamed("webhooks"), AfterStore)
        self.assertIsInstance(gateway.getServiceNamed("backlog"), TimerService)
        self.assertIsInstance(gateway.getServiceNamed("api"), StreamServerEndpointService)
        self.assertIsInstance(gateway.limiter, MemoryLimiter)
        # Nothing that needs the store exists before it is open.
        self.assertEqual((gateway.store, gateway.tracker, gateway.api, gateway.webhooks), (None, None, None, None))
        self.assertFalse(gateway.accepting_dials)

    def test_admin_listener(self) -> None:
        gateway = tree(api="admin_listen = tcp:0:interface=127.0.0.1\n")
        self.assertEqual(names(gateway)[-2:], ["api", "admin"])
        self.assertIsInstance(gateway.getServiceNamed("admin"), StreamServerEndpointService)

    def test_cluster_mode_shares_one_redis_connection(self) -> None:
        gateway = tree(
            database="backend = postgresql\ndsn = host=127.0.0.1 dbname=dialgw\n",
            extra="[ratelimit]\nbackend = redis\n[redis]\nurl = redis://127.0.0.1:6379/0\n",
        )
        self.assertEqual(names(gateway), ["store", "redis", "esl", "webhooks", "presence", "backlog", "api"])
        redis = gateway.getServiceNamed("redis")
        self.assertIsInstance(redis, RedisConnection)
        self.assertIs(gateway.redis, redis)
        self.assertIsInstance(gateway.limiter, RedisLimiter)
        self.assertIsInstance(gateway.getServiceNamed("presence"), AfterStore)

    def test_redis_limits_without_postgresql_are_not_a_cluster(self) -> None:
        gateway = tree(extra="[ratelimit]\nbackend = redis\n")
        self.assertEqual(names(gateway), ["store", "redis", "esl", "webhooks", "backlog", "api"])

    def test_development_simulator_and_receiver_come_first(self) -> None:
        gateway = tree(extra="[simulator]\nlisten = tcp:0:interface=127.0.0.1\nwebhook_receiver = tcp:0\n")
        self.assertEqual(names(gateway)[:3], ["simulator", "webhook-receiver", "store"])
        self.assertIsInstance(gateway.getServiceNamed("webhook-receiver"), StreamServerEndpointService)

    def test_the_default_config_path(self) -> None:
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["config"], "/etc/dialgw/dialgw.conf")

    def test_the_simulator_is_imported_only_when_configured(self) -> None:
        script = (
            "import sys\n"
            "from twisted.internet import reactor\n"
            "from dialgw.config import parse_config\n"
            "from dialgw.service import GatewayService\n"
            f"GatewayService(parse_config({BASE.format(api='', database='', extra='')!r}), reactor)\n"
            "print(sorted(name for name in sys.modules if name.startswith('dialgw.simulator')))\n"
        )
        output = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
        self.assertEqual(output.stdout.strip(), "[]", output.stderr)

    def test_until_the_store_is_open_the_api_answers_503(self) -> None:
        from twisted.web.test.requesthelper import DummyRequest

        request = DummyRequest([b"api", b"v1", b"dial"])
        request.method = b"POST"
        body = tree().requests.wrapped.render(request)
        self.assertEqual(request.responseCode, 503)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"retry-after"), [b"1"])
        self.assertEqual(body, b'{"error":"no_fs_capacity","message":"the gateway is starting"}')

    def test_building_the_tree_starts_no_timer(self) -> None:
        """makeService has no side effect: not even the simulator's heartbeat runs before start."""
        clock = Clock()
        settings = parse_config(BASE.format(api="", database="", extra="[simulator]\nlisten = tcp:0\nheartbeat_sec = 5\n"))
        GatewayService(settings, reactor, clock)
        self.assertEqual(clock.getDelayedCalls(), [])
