"""A whole gateway for end-to-end tests: the real service tree, the real ESL
client over TCP to the simulator, real HTTP, a real SQLite file.

I/O runs on the reactor over 127.0.0.1; every timer (the simulator's
scenarios and heartbeats, the gateway's watchdogs, reconnect backoff) runs
on one shared `task.Clock` that the test advances.

Waiting for I/O is waiting on what the code reports (`Harness.changes`):
the tracker's event listeners (a status stored), the node connections'
``on_ready``/``on_lost``, and every command the simulator receives.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.task import Clock, deferLater
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial.unittest import TestCase

from dialgw import ids
from dialgw.calls.machine import STATUSES
from dialgw.config import parse_config
from dialgw.esl.client import NodeConnection
from dialgw.service import GatewayService
from dialgw.simulator.server import FreeSwitchSimulator
from tests.support import Changes, HTTPClient

NOW = 1_800_000_000.0


async def poll(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Wait (in real time, for I/O only) until ``predicate()`` is true.

    A last resort for conditions nothing reports; `Changes.until` waits on
    what the code reports instead.
    """
    waited = 0.0
    while True:
        value = predicate()
        if value:
            return value
        if waited >= timeout:
            raise AssertionError(f"gave up waiting for {predicate}")
        await deferLater(reactor, 0.005, lambda: None)
        waited += 0.005


class _Received(ProtocolWrapper):
    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        self.factory.changes()


class _Observed(WrappingFactory):
    """The simulator's factory; ``changes`` hears of every command it receives
    (the simulator runs a command as it reads it)."""

    protocol = _Received

    def __init__(self, wrapped: Any, changes: Changes) -> None:
        super().__init__(wrapped)
        self.changes = changes


def _observe_connection(connection: NodeConnection, changes: Changes) -> None:
    """Tell ``changes`` when ``connection`` becomes ready or is lost."""
    on_ready, on_lost = connection.on_ready, connection.on_lost

    def ready(node: NodeConnection) -> object:
        try:
            return on_ready(node) if on_ready is not None else None
        finally:
            changes()

    def lost(node: NodeConnection) -> object:
        try:
            return on_lost(node) if on_lost is not None else None
        finally:
            changes()

    connection.on_ready, connection.on_lost = ready, lost


class Harness:
    def __init__(self, testcase, start: float = NOW) -> None:
        self.testcase = testcase
        #: Fires its waiters whenever the gateway or the simulator reports a change.
        self.changes = Changes()
        testcase.addCleanup(self._no_waiter_left)  # runs last
        self.clock = Clock()
        self.clock.advance(start)
        self.simulator = FreeSwitchSimulator(clock=self.clock, heartbeat_sec=20)
        self.simulator.start()
        testcase.addCleanup(self.simulator.stop)
        self.directory = testcase.mktemp()
        os.mkdir(self.directory)
        self.db_path = os.path.join(self.directory, "dialgw.sqlite")
        #: The ``[database]`` section's settings (a SQLite file of the test's own).
        self.database = f"path = {self.db_path}\n"
        self.gateway: GatewayService | None = None
        self.sim_port: Any = None

    def _no_waiter_left(self) -> None:
        # Every wait removes its waiter, whether it succeeded or gave up.
        # (The soak's stand-in for a test case has no assertEqual.)
        if self.changes.waiting:
            raise AssertionError(f"{self.changes.waiting} waiters outlived their wait")

    async def start_simulator(self, port: int = 0) -> int:
        self.sim_port = await TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(
            _Observed(self.simulator.factory(), self.changes)
        )
        self.testcase.addCleanup(self.stop_simulator)
        return self.sim_port.getHost().port

    async def stop_simulator(self) -> None:
        if self.sim_port is not None:
            port, self.sim_port = self.sim_port, None
            await port.stopListening()
            self.simulator.drop_connections()

    def config_text(self, sim_port: int, api: dict[str, str] | None = None, **extra: str) -> str:
        return (
            "[node]\nid = acW68\n"
            "[api]\nlisten = tcp:0:interface=127.0.0.1\n"
            + "".join(f"{key} = {value}\n" for key, value in (api or {}).items())
            +
            f"[database]\n{self.database}"
            f"[freeswitch:fs1]\nendpoint = tcp:host=127.0.0.1:port={sim_port}\n"
            "heartbeat_sec = 20\nmax_cps = 1000\n"
            + "".join(f"{key} = {value}\n" for key, value in extra.items())
        )

    async def start_gateway(
        self, sim_port: int, wait_ready: bool = True, api: dict[str, str] | None = None, *,
        io: Any = reactor, clock: Any = None, stop_at_cleanup: bool = True, **extra: str
    ) -> GatewayService:
        """Start a gateway on the simulator at ``sim_port``; ``io`` and ``clock``
        are its reactor and clock (the global reactor, the shared clock)."""
        settings = parse_config(self.config_text(sim_port, api, **extra))
        gateway = GatewayService(settings, io, clock if clock is not None else self.clock)
        gateway.startService()
        await gateway.ready
        gateway.tracker.event_listeners.append(self.changes)
        for connection in gateway.connections.values():
            _observe_connection(connection, self.changes)
        self.gateway = gateway
        if stop_at_cleanup:
            self.testcase.addCleanup(self.stop_gateway, gateway)
        port = gateway.api_port.getHost().port
        self.http = HTTPClient(self.testcase, f"http://127.0.0.1:{port}")
        if wait_ready:
            await self.node_ready()
        return gateway

    async def stop_gateway(self, gateway: GatewayService | None = None) -> None:
        gateway = gateway or self.gateway
        if gateway is not None and gateway.running:
            await gateway.stopService()

    async def until(self, check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
        """Wait until ``check()`` (sync or async) is true, re-checked at each change."""
        return await self.changes.until(check, timeout, what)

    async def node_ready(self, name: str = "fs1", ready: bool = True) -> None:
        connection = self.gateway.connections[name]
        await self.until(lambda: connection.ready == ready, what=f"{name} ready={ready}")

    @property
    def store(self):
        return self.gateway.store

    async def create_app(self) -> None:
        self.app, self.key = await self.store.create_app(
            "e2e", "http://127.0.0.1:9/hook", ["0721234567"], NOW
        )

    def auth(self) -> dict[str, str]:
        return {"X-App-ID": self.app.app_id, "X-API-Key": self.key}

    async def dial(self, to: str, expect: int = 202, **fields: Any):
        body = {"to": to, "from": "0721234567", **fields}
        reply = await self.http.request(
            "POST", "/api/v1/dial", {**self.auth(), "Content-Type": "application/json"},
            json.dumps(body).encode(),
        )
        assert reply.status == expect, (reply.status, reply.body)
        return reply

    async def placed(self, to: str, **fields: Any) -> str:
        """Dial and wait until the simulator has the channel; the session uuid."""
        session_uuid = (await self.dial(to, **fields)).json()["session_uuid"]
        channel = ids.channel_of(session_uuid)
        if not to.endswith("7"):
            await self.until(lambda: channel in self.simulator.calls, what=f"channel {channel}")
        return session_uuid

    async def get(self, session_uuid: str) -> dict:
        reply = await self.http.request("GET", f"/api/v1/dial/{session_uuid}", self.auth())
        return reply.json()

    async def delete(self, session_uuid: str):
        return await self.http.request("DELETE", f"/api/v1/dial/{session_uuid}", self.auth())

    async def status(self, session_uuid: str, status: str, timeout: float = 10.0):
        """Wait until the session has reached ``status`` (stored); the session."""

        async def reached():
            session = await self.store.get_session(session_uuid)
            return session if STATUSES.index(session.status) >= STATUSES.index(status) else None

        return await self.until(reached, timeout, f"{session_uuid} {status}")

    async def advance(self, seconds: float, step: float = 0.1) -> None:
        """Move the shared clock forward in small steps, letting I/O run between."""
        steps = max(1, round(seconds / step))
        for _ in range(steps):
            self.clock.advance(seconds / steps)
            await deferLater(reactor, 0, lambda: None)

    async def history(self, session_uuid: str) -> list[tuple[str, str | None]]:
        events = await self.store.session_events(session_uuid)
        return [(event.status, event.hangup_cause) for event in events]


class GatewayTestCase(TestCase):
    """Each test gets a whole gateway (`Harness`), its simulator and an app."""

    timeout = 60
    #: ``[api]`` settings of the gateway, beyond the harness's own.
    api: dict[str, str] | None = None

    async def setUp(self) -> None:
        self.h = Harness(self)
        self.sim_port = await self.h.start_simulator()
        await self.h.start_gateway(self.sim_port, api=self.api)
        await self.h.create_app()
