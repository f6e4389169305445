"""The service tree: the one place where dialgw's parts are wired together.

``twistd -n dialgw --config PATH`` calls `makeService`. The store is opened
(and migrated) when the service starts; only then do the ESL connections
start and the API listen, so no request ever meets a half-ready gateway.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, Logger, jsonFileLogObserver
from twisted.python import usage
from twisted.web.server import Site

from dialgw.api.app import DialAPI
from dialgw.api.http import api_site
from dialgw.calls import machine
from dialgw.calls.tracker import CallTracker
from dialgw.cluster import NodePresence
from dialgw.config import ConfigError, Settings, load_config
from dialgw.esl.client import NodeConnection
from dialgw.limits import Limiter, RedisLimiter, make_limiter
from dialgw.logs import text_log_observer
from dialgw.ops import GatewayCollector, Metrics, RequestLog, Root, ops_resources
from dialgw.pool import NodePool, PoolNode
from dialgw.store import open_store
from dialgw.webhooks.sender import WebhookSender

log = Logger()

#: What the gateway subscribes to on every node: the channel events that move
#: a session, CHANNEL_CREATE (to resend a kill that raced the originate), job
#: results and heartbeats. No filters: they would drop jobs and heartbeats.
EVENT_NAMES = ("CHANNEL_CREATE", *machine.CHANNEL_EVENTS, "BACKGROUND_JOB", "HEARTBEAT")


#: How long /healthz waits for the database before calling it down.
HEALTH_TIMEOUT_SEC = 2.0
#: A cluster node is taken for dead this long after its last announcement.
PRESENCE_TTL_SEC = 15.0
#: How long SIGTERM waits for API requests in flight.
DRAIN_TIMEOUT_SEC = 10.0


class Options(usage.Options):
    optParameters = [
        ["config", "c", "/etc/dialgw/dialgw.conf", "Path of the configuration file."],
    ]


class GatewayService(MultiService):
    """Opens the store, then starts the ESL connections and the API."""

    def __init__(
        self, settings: Settings, reactor: Any, clock: Any = None, *, daemon: bool = False,
        text_log_to_stdout: bool = False,
    ) -> None:
        super().__init__()
        #: Whether this is the process's daemon (signal handlers, stop on failure).
        self.daemon = daemon
        #: Whether twistd would write its text log to stdout (``--nodaemon``
        #: without ``--logfile``, ``--syslog`` or ``--logger``): then the
        #: daemon writes the same lines itself, for less (`dialgw.logs`).
        self.text_log_to_stdout = text_log_to_stdout
        self.settings = settings
        self.reactor = reactor
        #: Time for every timer (tests pass a `task.Clock`); I/O stays on the reactor.
        self.clock = clock if clock is not None else reactor
        self.store: Any = None
        self.tracker: CallTracker | None = None
        self.api: DialAPI | None = None
        self.limiter: Limiter | None = None
        self.presence: NodePresence | None = None
        self.connections: dict[str, NodeConnection] = {}
        self.pool: NodePool | None = None
        self.simulator: Any = None
        self.webhooks: WebhookSender | None = None
        self._ports: list[Any] = []
        self.api_port: Any = None
        self.admin_port: Any = None
        self.requests: RequestLog | None = None
        self.metrics: Metrics | None = None
        self.backlog = 0
        self._backlog_loop: LoopingCall | None = None
        self.ready: Deferred = Deferred()

    def setServiceParent(self, parent) -> None:
        super().setServiceParent(parent)
        # twistd asks the application for its log observer when it starts
        # logging: `[log] format = json` answers with one JSON object per line.
        if not (self.daemon and hasattr(parent, "setComponent")):
            return
        if self.settings.log.format == "json":
            parent.setComponent(ILogObserver, jsonFileLogObserver(sys.stdout, recordSeparator=""))
        elif self.text_log_to_stdout:
            parent.setComponent(ILogObserver, text_log_observer(sys.stdout))

    def startService(self) -> None:
        super().startService()
        if self.daemon and hasattr(signal, "SIGHUP"):
            # An unhandled SIGHUP would kill the daemon; logs go to stdout or
            # the journal, so there is nothing to reopen.
            signal.signal(signal.SIGHUP, lambda *_: log.info("SIGHUP received; ignored"))
        d = Deferred.fromCoroutine(self._start())
        d.addErrback(self._failed)

    def _failed(self, failure) -> None:
        log.failure("dialgw could not start", failure)
        if not self.ready.called:
            self.ready.errback(failure)
        if self.daemon and self.reactor.running:
            self.reactor.stop()

    async def _start(self) -> None:
        settings, reactor = self.settings, self.reactor
        if settings.simulator is not None:
            await self._start_simulator()
        self.store = await open_store(reactor, settings.database)
        nodes = []
        for fs in settings.freeswitch:
            connection = NodeConnection(
                name=fs.name,
                endpoint=clientFromString(reactor, fs.endpoint),
                password=fs.password,
                heartbeat_sec=fs.heartbeat_sec,
                event_names=EVENT_NAMES,
                clock=self.clock,
                on_event=self._on_event,
                on_ready=self._on_ready,
            )
            self.connections[fs.name] = connection
            nodes.append(PoolNode(fs.name, connection, fs.max_channels, fs.max_cps))
        self.pool = NodePool(self.clock, nodes)
        self.tracker = CallTracker(
            node_id=settings.node.id,
            store=self.store,
            pool=self.pool,
            clock=self.clock,
            links=self.connections,
            dial_strings={fs.name: fs.dial_string for fs in settings.freeswitch},
        )
        # This node's sessions that were live when it stopped: followed again,
        # reconciled as each switch connection becomes ready.
        self.tracker.adopt(await self.store.live_sessions(settings.node.id))
        self.webhooks = WebhookSender(
            store=self.store,
            reactor=reactor,
            clock=self.clock,
            timeout_sec=settings.webhooks.timeout_sec,
            max_attempts=settings.webhooks.max_attempts,
            max_age_sec=settings.webhooks.max_age_sec,
        )
        self.tracker.event_listeners.append(self.webhooks.wake)
        self.webhooks.setServiceParent(self)
        for connection in self.connections.values():
            connection.setServiceParent(self)
        self.limiter = make_limiter(settings.ratelimit, settings.redis, self.clock, reactor)
        await self.limiter.start()
        if settings.database.backend == "postgresql" and isinstance(self.limiter, RedisLimiter):
            # Cluster mode: nodes share the store and Redis; each announces
            # itself, and survivors adopt the live sessions of a dead node.
            self.presence = NodePresence(
                node_id=settings.node.id,
                redis=self.limiter.run,
                store=self.store,
                clock=self.clock,
                adopt=self.tracker.adopt,
                ttl_sec=PRESENCE_TTL_SEC,
            )
            self.presence.setServiceParent(self)
        self.api = DialAPI(
            store=self.store,
            tracker=self.tracker,
            pool=self.pool,
            node_id=settings.node.id,
            clock=self.clock,
            limiter=self.limiter,
            ratelimit=settings.ratelimit,
        )
        self.metrics = Metrics() if settings.api.metrics else None
        if self.metrics is not None:
            self.metrics.add_collector(GatewayCollector(self))
        self._backlog_loop = LoopingCall(self._refresh_backlog)
        self._backlog_loop.clock = self.clock
        self._backlog_loop.start(10.0, now=True)
        api = self.requests = RequestLog(self.api.resource(), self.metrics)
        ops = ops_resources(self, self.metrics)
        if settings.api.admin_listen is None:
            port = await self._listen(settings.api.listen, Root(api, ops))
        else:
            port = await self._listen(settings.api.listen, Root(api, {}))
            self.admin_port = await self._listen(settings.api.admin_listen, Root(None, ops))
        self.api_port = port
        log.info("dialgw {node} listening on {listen}", node=settings.node.id, listen=settings.api.listen)
        self.ready.callback(self)

    async def _listen(self, endpoint: str, root) -> Any:
        port = await serverFromString(self.reactor, endpoint).listen(api_site(root, self.clock))
        self._ports.append(port)
        return port

    async def _refresh_backlog(self) -> None:
        try:
            self.backlog = await self.store.count_pending_events()
        except Exception:
            log.failure("could not count the webhook backlog")

    async def health(self) -> dict:
        """The state of each part; ``status`` is ``ok`` when dials can work.

        ``ok`` needs the database to answer and at least one FreeSWITCH node
        ready; anything else is ``unavailable`` (503).
        """
        try:
            await self.store.ping().addTimeout(HEALTH_TIMEOUT_SEC, self.clock)
            database = "ok"
        except Exception as error:
            database = f"error: {type(error).__name__}"
        nodes = {
            name: "ready" if connection.ready else "disconnected"
            for name, connection in self.connections.items()
        }
        ok = database == "ok" and "ready" in nodes.values() and self.api is not None and self.api.accepting
        limiter = getattr(self, "limiter", None)
        report: dict = {
            "status": "ok" if ok else "unavailable",
            "node": self.settings.node.id,
            "accepting_dials": bool(self.api is not None and self.api.accepting),
            "database": database,
            "freeswitch": nodes,
            "webhook_backlog": self.backlog,
        }
        if limiter is not None:
            report["rate_limits"] = "degraded (Redis unreachable)" if getattr(limiter, "degraded", False) else "ok"
        return report

    async def _start_simulator(self) -> None:
        from dialgw.simulator.server import FreeSwitchSimulator

        sim = self.settings.simulator
        self.simulator = FreeSwitchSimulator(clock=self.clock, heartbeat_sec=sim.heartbeat_sec)
        port = await serverFromString(self.reactor, sim.listen).listen(self.simulator.factory())
        self._ports.append(port)
        log.info("embedded FreeSWITCH simulator on {listen}", listen=sim.listen)
        if sim.webhook_receiver is not None:
            from twisted.web.resource import Resource

            from dialgw.devreceiver import WebhookLog

            root = Resource()
            root.putChild(b"webhooks", WebhookLog())
            port = await serverFromString(self.reactor, sim.webhook_receiver).listen(Site(root))
            self._ports.append(port)
            log.info("development webhook receiver on {listen}/webhooks", listen=sim.webhook_receiver)

    def _on_event(self, connection: NodeConnection, event) -> None:
        if self.tracker is not None:
            self.tracker.on_event(connection, event)

    def _on_ready(self, connection: NodeConnection) -> Deferred | None:
        if self.tracker is None:
            return None
        return self.tracker.reconcile(connection)

    def stopService(self) -> Deferred:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        """SIGTERM: refuse new dials (503), let requests in flight finish
        (at most `DRAIN_TIMEOUT_SEC`), then stop listening, flush the webhook
        attempts, say ``exit`` on every ESL connection and close the store.
        Calls in progress go on in FreeSWITCH; the next start reconciles them.
        """
        if self.api is not None:
            self.api.accepting = False
        if self.requests is not None and self.requests.in_flight:
            log.info("draining {count} API requests in flight", count=self.requests.in_flight)
            try:
                await self.requests.drained().addTimeout(DRAIN_TIMEOUT_SEC, self.reactor)
            except Exception:
                log.warn("requests still in flight after {timeout}s; stopping anyway", timeout=DRAIN_TIMEOUT_SEC)
        if self._backlog_loop is not None and self._backlog_loop.running:
            self._backlog_loop.stop()
        for port in self._ports:
            await port.stopListening()
        await super().stopService()
        if self.simulator is not None:
            self.simulator.stop()
        if self.limiter is not None:
            await self.limiter.close()
        if self.store is not None:
            self.store.close()


def makeService(options: Options) -> GatewayService:
    from twisted.internet import reactor

    try:
        settings = load_config(options["config"])
    except ConfigError as error:
        # One line, no traceback (SPEC §6).
        sys.stderr.write(f"dialgw: {error}\n")
        raise SystemExit(2) from None
    twistd = getattr(options, "parent", None) or {}
    to_stdout = bool(
        twistd.get("nodaemon") and twistd.get("logfile") in (None, "", "-")
        and not twistd.get("syslog") and not twistd.get("logger")
    )
    return GatewayService(settings, reactor, daemon=True, text_log_to_stdout=to_stdout)
