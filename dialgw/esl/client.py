"""One reconnecting, watched connection to one FreeSWITCH node."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.interfaces import IAddress, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from dialgw.esl.frames import Event, Frame
from dialgw.esl.protocol import ESLClientProtocol, ESLError, check_safe

__all__ = ["NodeConnection", "NodeUnavailable"]

log = Logger()

#: Silence longer than this many heartbeat intervals means a dead connection.
SILENT_HEARTBEATS = 3


class NodeUnavailable(ESLError):
    """The node is not connected, authenticated and subscribed right now."""


class _NodeFactory(Factory):
    def __init__(self, node: NodeConnection) -> None:
        self._node = node

    def buildProtocol(self, addr: IAddress | None) -> ESLClientProtocol:
        return self._node._build_protocol()


class NodeConnection(Service):
    """A `ClientService` that keeps one authenticated ESL connection alive.

    `prepareConnection` authenticates and subscribes (no filters: they would
    also drop BACKGROUND_JOB and HEARTBEAT); after every successful
    (re)connection `on_ready(self)` runs so the call tracker can reconcile,
    and `on_lost(self)` runs when a ready connection goes away. A watchdog
    drops a connection that has been silent for three heartbeat intervals:
    FreeSWITCH never notices a dead peer and sets no TCP keepalive.
    """

    def __init__(
        self,
        *,
        name: str,
        endpoint: IStreamClientEndpoint,
        password: str,
        heartbeat_sec: float,
        event_names: Sequence[str],
        clock: IReactorTime,
        on_event: Callable[[NodeConnection, Event], None],
        on_ready: Callable[[NodeConnection], object] | None = None,
        on_lost: Callable[[NodeConnection], object] | None = None,
        retry_policy: Callable[[int], float] | None = None,
        command_timeout: float = 10.0,
    ) -> None:
        if heartbeat_sec <= 0:
            raise ValueError("heartbeat_sec must be positive")
        check_safe(password, "password")
        self.name = name
        self.heartbeat_sec = heartbeat_sec
        self.session_count: int | None = None
        self.max_sessions: int | None = None
        self.core_uuid: str | None = None
        self.last_heartbeat_at: float | None = None
        self._password = password
        self._event_names = list(event_names)
        self._clock = clock
        self._command_timeout = command_timeout
        self._on_event = on_event
        #: Run after every successful (re)connection, and when a ready
        #: connection goes away.
        self.on_ready = on_ready
        self.on_lost = on_lost
        self._policy = retry_policy or backoffPolicy(initialDelay=0.5, maxDelay=30)
        # Failed auth/subscribe attempts in a row; see _prepare for why the
        # retry policy has to be told about them.
        self._failed_preparations = 0
        self._current: ESLClientProtocol | None = None  # connected, maybe preparing
        self._proto: ESLClientProtocol | None = None  # authenticated and subscribed
        self._preparing: tuple[ESLClientProtocol, Deferred[None], Deferred[None]] | None = None
        self._dropping: ESLClientProtocol | None = None
        self._built: ESLClientProtocol | None = None
        self._client = ClientService(
            endpoint,
            _NodeFactory(self),
            retryPolicy=self._retry_delay,
            clock=clock,
            prepareConnection=self._prepare,
        )
        self._watchdog = LoopingCall(self._check_silence)
        self._watchdog.clock = clock

    # -- state ---------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Authenticated, subscribed, and heard from within 3 heartbeats."""
        proto = self._proto
        return (
            proto is not None
            and proto.is_connected
            and self._clock.seconds() - proto.last_activity < SILENT_HEARTBEATS * self.heartbeat_sec
        )

    @property
    def protocol(self) -> ESLClientProtocol | None:
        """The ready connection's protocol, if any."""
        return self._proto if self.ready else None

    def _retry_delay(self, attempt: int) -> float:
        return self._policy(attempt + self._failed_preparations)

    # -- commands ------------------------------------------------------------

    def api(self, command: str) -> Deferred[str]:
        """``api <command>`` on this node; fails at once with `NodeUnavailable`."""
        check_safe(command, "command")
        proto = self.protocol
        if proto is None:
            return fail(NodeUnavailable(f"node {self.name} is not ready"))
        return proto.api(command)

    def bgapi(self, command: str, job_uuid: str) -> Deferred[Frame]:
        """``bgapi <command>`` with `job_uuid`; fires with the command/reply."""
        check_safe(command, "command")
        check_safe(job_uuid, "Job-UUID")
        proto = self.protocol
        if proto is None:
            return fail(NodeUnavailable(f"node {self.name} is not ready"))
        return proto.bgapi(command, job_uuid)

    # -- service -------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # twisted's Service is unannotated
        self._watchdog.start(self.heartbeat_sec / 2, now=False)
        self._client.startService()

    def stopService(self) -> Deferred[None]:
        """Say ``exit`` if connected, then stop reconnecting and close."""
        super().stopService()  # type: ignore[no-untyped-call]  # twisted's Service is unannotated
        if self._watchdog.running:
            self._watchdog.stop()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        proto = self._proto
        if proto is not None and proto.is_connected:
            proto.exit().addErrback(lambda _: None)
        preparing = self._preparing
        if preparing is not None:
            # Stopping ClientService in the middle of prepareConnection leaves
            # the connection to close later in a state where ClientService
            # cannot take the notice: close it first and let the machine settle.
            preparing[0].abort()
            await preparing[2]
        await self._client.stopService()

    # -- connection life -----------------------------------------------------

    def _build_protocol(self) -> ESLClientProtocol:
        proto = ESLClientProtocol(self._password, self._clock, self._command_timeout)
        proto.on_event = lambda event: self._event(event)
        proto.on_disconnect_notice = self._disconnect_notice
        proto.on_connection_lost = lambda reason: self._lost(proto, reason)
        self._built = proto
        return proto

    def _prepare(self, wrapped: object) -> Deferred[None]:
        """Authenticate and subscribe; the Deferred never fails.

        ClientService (Twisted 26) has no transition for a connection that
        closes while it is preparing, or after preparation failed (automat
        NoTransition from connectionLost). So a failed preparation closes the
        connection and reports success only once it is gone: ClientService
        then sees an ordinary lost connection and retries, and
        `_retry_delay` adds the failures so the backoff still grows.
        """
        # ClientService hands us a proxy; use the protocol we built for this
        # connection (one attempt at a time) so identity checks work.
        proto = self._built
        assert proto is not None and getattr(wrapped, "transport", None) is proto.transport
        self._current = proto
        self._dropping = None
        self._enable_keepalive(proto)
        done: Deferred[None] = Deferred()
        gone: Deferred[None] = Deferred()
        self._preparing = (proto, done, gone)

        async def setup() -> None:
            await proto.whenAuthenticated()
            await proto.subscribe(self._event_names)

        Deferred.fromCoroutine(setup()).addCallbacks(
            lambda _: self._became_ready(proto, done),
            lambda failure: self._preparation_failed(proto, failure),
        )
        return done

    def _enable_keepalive(self, proto: ESLClientProtocol) -> None:
        set_keepalive = getattr(proto.transport, "setTcpKeepAlive", None)
        if set_keepalive is not None:
            try:
                set_keepalive(1)
            except Exception:
                log.failure("could not enable TCP keepalive for {node}", node=self.name)

    def _became_ready(self, proto: ESLClientProtocol, done: Deferred[None]) -> None:
        self._preparing = None
        self._failed_preparations = 0
        self._proto = proto
        log.info("ESL connection to {node} ready", node=self.name)
        done.callback(None)
        if self.on_ready is not None:
            maybeDeferred(self.on_ready, self).addErrback(
                lambda f: log.failure("on_ready for {node} failed", f, node=self.name)
            )

    def _preparation_failed(self, proto: ESLClientProtocol, failure: Failure) -> None:
        self._failed_preparations += 1
        log.warn(
            "ESL connection to {node} not usable: {error}",
            node=self.name,
            error=str(failure.value),
        )
        if proto.is_connected:
            proto.abort()

    def _lost(self, proto: ESLClientProtocol, reason: Failure) -> None:
        if self._current is proto:
            self._current = None
        preparing = self._preparing
        if preparing is not None and preparing[0] is proto:
            self._preparing = None
            _, done, gone = preparing
            if not done.called:
                done.callback(None)
            gone.callback(None)
        if self._proto is proto:
            self._proto = None
            log.info("ESL connection to {node} lost: {reason}", node=self.name, reason=str(reason.value))
            if self.on_lost is not None:
                try:
                    self.on_lost(self)
                except Exception:
                    log.failure("on_lost for {node} failed", node=self.name)

    def _check_silence(self) -> None:
        proto = self._current
        if proto is None or not proto.is_connected or proto is self._dropping:
            return
        silent_for = self._clock.seconds() - proto.last_activity
        if silent_for >= SILENT_HEARTBEATS * self.heartbeat_sec:
            self._dropping = proto
            log.warn(
                "ESL connection to {node} silent for {silent_for:.1f}s; reconnecting",
                node=self.name,
                silent_for=silent_for,
            )
            proto.abort()

    # -- incoming ------------------------------------------------------------

    def _event(self, event: Event) -> None:
        if event.name == "HEARTBEAT":
            self._heartbeat(event)
        self._on_event(self, event)

    def _heartbeat(self, event: Event) -> None:
        self.last_heartbeat_at = self._clock.seconds()
        for attribute, header in (("session_count", "Session-Count"), ("max_sessions", "Max-Sessions")):
            value = event.get(header)
            if value is not None and value.isdigit():
                setattr(self, attribute, int(value))
        core_uuid = event.get("Core-UUID")
        if core_uuid and core_uuid != self.core_uuid:
            if self.core_uuid is not None:
                log.warn("FreeSWITCH {node} restarted: Core-UUID {core_uuid}", node=self.name, core_uuid=core_uuid)
            self.core_uuid = core_uuid

    def _disconnect_notice(self, frame: Frame) -> None:
        log.info(
            "FreeSWITCH {node} disconnect notice: {text}",
            node=self.name,
            text=frame.body.decode("utf-8", "replace").strip(),
        )
