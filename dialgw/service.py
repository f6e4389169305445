"""The service tree: the one place where dialgw's parts are wired together.

``twistd -n dialgw --config PATH`` calls `makeService`, which builds the
whole tree at once, without I/O: a `GatewayService` whose named children
start in this order (and stop in the reverse order, one after another)::

    simulator          [simulator] only: the embedded FreeSWITCH simulator
    webhook-receiver   [simulator] webhook_receiver only: `dialgw.devreceiver`
    store              opens and migrates the database
    redis              [ratelimit] backend = redis only: the shared connection
    esl                one reconnecting ESL connection per [freeswitch:NAME],
                       each a child named NAME
    webhooks           the outbox sender               (once the store is open)
    presence           cluster mode only: `dialgw.cluster` (once the store is open)
    backlog            counts the outbox for /healthz and /metrics
    api                the API listener
    admin              [api] admin_listen only: /healthz and /metrics

Only what needs the store waits for it: once the store is open the call
tracker is made and this node's live sessions are adopted; then the
``webhooks`` and ``presence`` children start and the API is served. The
listeners listen from the start, but until then every API request is
answered 503 ``no_fs_capacity`` ("the gateway is starting", Retry-After: 1)
and /healthz says ``unavailable``: no dial meets a half-ready gateway. An
ESL connection ready before the adoption is reconciled by the adoption.
`GatewayService.ready` fires once all that is done and the listeners listen.

Stopping (SIGTERM): new dials get 503, the API requests in flight may
finish (at most `DRAIN_TIMEOUT_SEC`), then the children stop in reverse
order, each after the one before: the listeners first, the store after the
webhook sender has recorded its last attempts, the simulator last.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any

from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.endpoints import clientFromString, serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IReactorTime, IStreamServerEndpoint
from twisted.logger import ILogObserver, Logger, jsonFileLogObserver
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from dialgw.api.app import DialAPI, Unavailable
from dialgw.api.errors import starting
from dialgw.api.http import api_site
from dialgw.calls import machine
from dialgw.calls.tracker import CallTracker
from dialgw.cluster import NodePresence
from dialgw.config import DEFAULT_CONFIG_PATH, ConfigError, DatabaseSettings, Settings, SimulatorSettings, load_config
from dialgw.esl.client import NodeConnection
from dialgw.esl.frames import Event
from dialgw.limits import Limiter, RedisConnection, make_limiter
from dialgw.logs import text_log_observer
from dialgw.observe import OneShotObserver
from dialgw.ops import GatewayCollector, Metrics, RequestLog, Root, ops_resources
from dialgw.pool import NodePool, PoolNode
from dialgw.store import Store, StoreError, open_store
from dialgw.webhooks.sender import WebhookSender

log = Logger()

#: What the gateway subscribes to on every node: the channel events that move
#: a session, CHANNEL_CREATE (to resend a kill that raced the originate), job
#: results and heartbeats. No filters: they would drop jobs and heartbeats.
EVENT_NAMES = ("CHANNEL_CREATE", *machine.CHANNEL_EVENTS, "BACKGROUND_JOB", "HEARTBEAT")

#: How long SIGTERM waits for API requests in flight.
DRAIN_TIMEOUT_SEC = 10.0
#: How often the webhook backlog is counted for /healthz and /metrics.
BACKLOG_INTERVAL_SEC = 10.0

#: The global reactor provides many interfaces at once; Twisted has no one
#: type for it. Timers never use it: they take the ``clock``.
Reactor = Any


class Options(usage.Options):
    optParameters = [
        ["config", "c", DEFAULT_CONFIG_PATH, "Path of the configuration file."],
    ]


class StoreService(Service):
    """Opens (and migrates) the store when started; closes it when stopped."""

    def __init__(self, reactor: Reactor, database: DatabaseSettings) -> None:
        self._reactor = reactor
        self._database = database
        self._opened: OneShotObserver[Store] = OneShotObserver()
        #: The open store (None until it is).
        self.store: Store | None = None

    def when_open(self) -> Deferred[Store]:
        """Fires with the open store, or fails if it cannot be opened."""
        return self._opened.when()

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # untyped in Twisted
        d = Deferred.fromCoroutine(open_store(self._reactor, self._database))
        d.addCallbacks(self._open, self._opened.fail)

    def _open(self, store: Store) -> None:
        if not self.running:  # stopped while it was opening
            store.close()
            self._opened.fail(StoreError("the gateway stopped while the store was opening"))
            return
        self.store = store
        self._opened.fire(store)

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]  # untyped in Twisted
        if self.store is not None:
            self.store.close()


class AfterStore(Service):
    """A child that needs the open store (and the adoption done): ``build``
    makes it then, and it is started if this service still runs."""

    def __init__(self, started: Callable[[], Deferred[Store]], build: Callable[[Store], IService]) -> None:
        self._started = started
        self._build = build
        #: The service, once built.
        self.service: IService | None = None

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # untyped in Twisted
        # A store that fails to open is the gateway's failure, logged there.
        self._started().addCallbacks(self._start, lambda _: None)

    def _start(self, store: Store) -> None:
        if self.running and self.service is None:
            self.service = self._build(store)
            self.service.startService()  # type: ignore[no-untyped-call]  # IService is untyped

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]  # untyped in Twisted
        service = self.service
        if service is None or not service.running:
            return succeed(None)
        return maybeDeferred(service.stopService)


@implementer(IStreamServerEndpoint)
class RecordingEndpoint:
    """A server endpoint that remembers the port it listens on (or why not)."""

    def __init__(self, endpoint: IStreamServerEndpoint) -> None:
        self._endpoint = endpoint
        self._listening: OneShotObserver[IListeningPort] = OneShotObserver()
        #: The listening port, once it listens.
        self.port: IListeningPort | None = None

    def when_listening(self) -> Deferred[IListeningPort]:
        return self._listening.when()

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        def listening(port: IListeningPort) -> IListeningPort:
            self.port = port
            self._listening.fire(port)
            return port

        def failed(failure: Failure) -> Failure:
            self._listening.fail(failure)
            return failure

        d = self._endpoint.listen(factory)
        d.addCallbacks(listening, failed)
        return d


def simulator_service(settings: SimulatorSettings, reactor: Reactor, clock: IReactorTime) -> IService:
    """The embedded FreeSWITCH simulator (``[simulator]``), listening on its endpoint.

    `dialgw.simulator` is imported here only: an installed gateway never
    imports it unless ``[simulator]`` is configured. Its timers start with
    the service, not when the tree is built.
    """
    from dialgw.simulator.server import simulator_service as make

    return make(reactor, clock, settings.listen, heartbeat_sec=settings.heartbeat_sec)


def webhook_receiver_service(listen: str, reactor: Reactor) -> IService:
    """The development webhook receiver (``[simulator] webhook_receiver``) at ``/webhooks``."""
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    from dialgw.devreceiver import WebhookLog

    root = Resource()  # type: ignore[no-untyped-call]  # untyped in Twisted
    root.putChild(b"webhooks", WebhookLog())
    site = Site(root)  # type: ignore[no-untyped-call]
    log.info("development webhook receiver on {listen}/webhooks", listen=listen)
    endpoint = serverFromString(reactor, listen)  # type: ignore[no-untyped-call]
    return StreamServerEndpointService(endpoint, site)  # type: ignore[no-untyped-call]


class GatewayService(MultiService):
    """The gateway: its tree of named services, and the parts between them.

    It is also the `dialgw.ops.GatewayState` that /healthz and /metrics read.
    """

    def __init__(
        self, settings: Settings, reactor: Reactor, clock: IReactorTime | None = None, *, daemon: bool = False,
        text_log_to_stdout: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # untyped in Twisted
        #: Whether this is the process's daemon (signal handlers, stop on failure).
        self.daemon = daemon
        #: Whether twistd would write its text log to stdout (``--nodaemon``
        #: without ``--logfile``, ``--syslog`` or ``--logger``): then the
        #: daemon writes the same lines itself, for less (`dialgw.logs`).
        self.text_log_to_stdout = text_log_to_stdout
        self.settings = settings
        self.reactor = reactor
        #: Time for every timer (tests pass a `task.Clock`); I/O stays on the reactor.
        self.clock: IReactorTime = clock if clock is not None else reactor
        #: Made once the store is open (the API and the call tracker need it).
        self.tracker: CallTracker | None = None
        self.api: DialAPI | None = None
        self._started: OneShotObserver[Store] = OneShotObserver()
        self._ready: OneShotObserver[GatewayService] = OneShotObserver()
        self.backlog = 0
        self._build()

    # -- the tree --------------------------------------------------------------

    def _add(self, name: str, service: IService) -> None:
        # IService is untyped in Twisted.
        service.setName(name)  # type: ignore[no-untyped-call]
        service.setServiceParent(self)  # type: ignore[no-untyped-call]

    def _build(self) -> None:
        settings, reactor, clock = self.settings, self.reactor, self.clock
        if settings.simulator is not None:
            self._add("simulator", simulator_service(settings.simulator, reactor, clock))
            if settings.simulator.webhook_receiver is not None:
                self._add("webhook-receiver", webhook_receiver_service(settings.simulator.webhook_receiver, reactor))
        self._store = StoreService(reactor, settings.database)
        self._add("store", self._store)
        self.redis: RedisConnection | None = None
        if settings.ratelimit.backend == "redis":
            self.redis = RedisConnection(settings.redis.url, clock, reactor=reactor)
            self._add("redis", self.redis)
        self.limiter: Limiter = make_limiter(settings.ratelimit, self.redis, clock)
        #: The ESL connection of each ``[freeswitch:NAME]``, by name. They are
        #: the children of ``esl``, named NAME (`NodeConnection.name` is
        #: also its service name, so they cannot be called ``esl:NAME``).
        self.connections: dict[str, NodeConnection] = {}
        links = MultiService()  # type: ignore[no-untyped-call]  # untyped in Twisted
        self._add("esl", links)
        for fs in settings.freeswitch:
            connection = NodeConnection(
                name=fs.name,
                endpoint=clientFromString(reactor, fs.endpoint),  # type: ignore[no-untyped-call]
                password=fs.password,
                heartbeat_sec=fs.heartbeat_sec,
                event_names=EVENT_NAMES,
                clock=clock,
                on_event=self._on_event,
                on_ready=self._on_ready,
            )
            self.connections[fs.name] = connection
            connection.setServiceParent(links)  # type: ignore[no-untyped-call]  # untyped in Twisted
        self.pool = NodePool(
            clock,
            [PoolNode(fs.name, self.connections[fs.name], fs.max_channels, fs.max_cps) for fs in settings.freeswitch],
        )
        self._webhooks = AfterStore(self._started.when, self._webhook_sender)
        self._add("webhooks", self._webhooks)
        self._presence: AfterStore | None = None
        if settings.database.backend == "postgresql" and self.redis is not None:
            # Cluster mode: nodes share the store and Redis; each announces
            # itself, and survivors adopt the live sessions of a dead node.
            self._presence = AfterStore(self._started.when, self._node_presence)
            self._add("presence", self._presence)
        backlog = TimerService(BACKLOG_INTERVAL_SEC, self._refresh_backlog)  # type: ignore[no-untyped-call]
        backlog.clock = clock
        self._add("backlog", backlog)
        self.metrics = Metrics() if settings.api.metrics else None
        if self.metrics is not None:
            self.metrics.add_collector(GatewayCollector(self))
        #: Every API request, for the log line, the metrics and the drain;
        #: a 503 answers until the API is served.
        self.requests = RequestLog(Unavailable(starting()), self.metrics)
        ops = ops_resources(self, clock, self.metrics)
        self._listeners: list[RecordingEndpoint] = []
        if settings.api.admin_listen is None:
            self._api_endpoint = self._listen("api", settings.api.listen, Root(self.requests, ops))
            self._admin_endpoint = None
        else:
            self._api_endpoint = self._listen("api", settings.api.listen, Root(self.requests, {}))
            self._admin_endpoint = self._listen("admin", settings.api.admin_listen, Root(None, ops))

    def _listen(self, name: str, listen: str, root: Root) -> RecordingEndpoint:
        endpoint = RecordingEndpoint(serverFromString(self.reactor, listen))  # type: ignore[no-untyped-call]
        self._listeners.append(endpoint)
        self._add(name, StreamServerEndpointService(endpoint, api_site(root, self.clock)))  # type: ignore[no-untyped-call]
        return endpoint

    def _webhook_sender(self, store: Store) -> WebhookSender:
        sender = WebhookSender(store=store, reactor=self.reactor, clock=self.clock, settings=self.settings.webhooks)
        if self.tracker is not None:
            self.tracker.event_listeners.append(sender.wake)
        return sender

    def _node_presence(self, store: Store) -> NodePresence:
        assert self.redis is not None and self.tracker is not None
        return NodePresence(
            node_id=self.settings.node.id, redis=self.redis, store=store, clock=self.clock, adopt=self.tracker.adopt
        )

    # -- what tests and operators look at ------------------------------------

    @property
    def ready(self) -> Deferred[GatewayService]:
        """Fires when the API is served and every listener listens; fails if the gateway cannot start."""
        return self._ready.when()

    @property
    def store(self) -> Store | None:
        """The open store (None until it is)."""
        return self._store.store

    @property
    def webhooks(self) -> WebhookSender | None:
        service = self._webhooks.service
        return service if isinstance(service, WebhookSender) else None

    @property
    def presence(self) -> NodePresence | None:
        service = self._presence.service if self._presence is not None else None
        return service if isinstance(service, NodePresence) else None

    @property
    def api_port(self) -> IListeningPort | None:
        return self._api_endpoint.port

    @property
    def admin_port(self) -> IListeningPort | None:
        return self._admin_endpoint.port if self._admin_endpoint is not None else None

    # -- dialgw.ops.GatewayState ---------------------------------------------

    @property
    def node_id(self) -> str:
        return self.settings.node.id

    @property
    def accepting_dials(self) -> bool:
        return self.api is not None and self.api.accepting

    @property
    def nodes(self) -> Iterable[PoolNode]:
        return self.pool

    @property
    def rate_limits_degraded(self) -> bool:
        return self.limiter.degraded

    @property
    def webhook_results(self) -> Mapping[str, int]:
        sender = self.webhooks
        return sender.results if sender is not None else {}

    @property
    def webhook_backlog(self) -> int:
        return self.backlog

    def census(self) -> Mapping[tuple[str, str], int]:
        return self.tracker.census() if self.tracker is not None else {}

    def ping_database(self) -> Deferred[object]:
        store = self.store
        if store is None:
            return fail(StoreError("the store is not open yet"))
        return store.ping().addCallback(lambda _: None)

    # -- starting ----------------------------------------------------------------

    def setServiceParent(self, parent: Any) -> None:
        super().setServiceParent(parent)  # type: ignore[no-untyped-call]  # untyped in Twisted
        # twistd asks the application for its log observer when it starts
        # logging: `[log] format = json` answers with one JSON object per line.
        if not (self.daemon and hasattr(parent, "setComponent")):
            return
        out: IO[str] = sys.stdout
        if self.settings.log.format == "json":
            parent.setComponent(ILogObserver, jsonFileLogObserver(out, recordSeparator=""))
        elif self.text_log_to_stdout:
            parent.setComponent(ILogObserver, text_log_observer(out))

    def startService(self) -> None:
        if self.daemon and hasattr(signal, "SIGHUP"):
            # An unhandled SIGHUP would kill the daemon; logs go to stdout or
            # the journal, so there is nothing to reopen.
            signal.signal(signal.SIGHUP, lambda *_: log.info("SIGHUP received; ignored"))
        super().startService()  # type: ignore[no-untyped-call]  # untyped in Twisted
        Deferred.fromCoroutine(self._start()).addErrback(self._failed)

    async def _start(self) -> None:
        settings = self.settings
        store = await self._store.when_open()
        self.tracker = tracker = CallTracker(
            node_id=settings.node.id,
            store=store,
            pool=self.pool,
            clock=self.clock,
            # NodeConnection.name is Service.name to mypy (str | None); set, here.
            links=self.connections,  # type: ignore[arg-type]
            dial_strings={fs.name: fs.dial_string for fs in settings.freeswitch},
        )
        # This node's sessions that were live when it stopped: followed again,
        # reconciled with each switch connection that is (or becomes) ready.
        tracker.adopt(await store.live_sessions(settings.node.id))
        self.api = DialAPI(
            store=store,
            tracker=tracker,
            pool=self.pool,
            node_id=settings.node.id,
            clock=self.clock,
            limiter=self.limiter,
            ratelimit=settings.ratelimit,
        )
        self._started.fire(store)
        self.requests.wrapped = self.api.resource()
        for endpoint in self._listeners:
            await endpoint.when_listening()
        log.info("dialgw {node} listening on {listen}", node=settings.node.id, listen=settings.api.listen)
        self._ready.fire(self)

    def _failed(self, failure: Failure) -> None:
        log.failure("dialgw could not start", failure)
        if not self._started.called:
            self._started.fail(failure)
        if not self._ready.called:
            self._ready.fail(failure)
        if self.daemon and self.reactor.running:
            self.reactor.stop()

    def _refresh_backlog(self) -> Deferred[None] | None:
        store = self.store
        if store is None:
            return None

        async def count() -> None:
            try:
                self.backlog = await store.count_pending_events()
            except Exception:
                log.failure("could not count the webhook backlog")

        return Deferred.fromCoroutine(count())

    def _on_event(self, connection: NodeConnection, event: Event) -> None:
        if self.tracker is not None:
            self.tracker.on_event(connection, event)  # type: ignore[arg-type]  # as links= above

    def _on_ready(self, connection: NodeConnection) -> Deferred[None] | None:
        # Before the tracker exists, its adoption reconciles the ready links.
        if self.tracker is None:
            return None
        return self.tracker.reconcile(connection)  # type: ignore[arg-type]  # as links= above

    # -- stopping ----------------------------------------------------------------

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        """SIGTERM: refuse new dials (503), let requests in flight finish
        (at most `DRAIN_TIMEOUT_SEC`), then stop the children in reverse
        order, each after the one before. Calls in progress go on in
        FreeSWITCH; the next start reconciles them.
        """
        if self.api is not None:
            self.api.accepting = False
        if self.requests.in_flight:
            log.info("draining {count} API requests in flight", count=self.requests.in_flight)
            try:
                await self.requests.drained().addTimeout(DRAIN_TIMEOUT_SEC, self.reactor)
            except Exception:
                log.warn("requests still in flight after {timeout}s; stopping anyway", timeout=DRAIN_TIMEOUT_SEC)
        Service.stopService(self)  # type: ignore[no-untyped-call]  # not MultiService's: one child at a time
        for child in reversed(list(self)):
            if not child.running:
                continue
            try:
                await maybeDeferred(child.stopService)
            except Exception:
                log.failure("stopping {name} failed", name=child.name)


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
