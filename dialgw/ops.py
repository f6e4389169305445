"""What operators see: ``/healthz``, ``/metrics`` and one log line per request.

The API resource is wrapped, not modified: `RequestLog` notes each request's
start, and when it finishes writes one log line (request id, app id,
method, path, status, latency) and the request metrics. Gauges are read from
the running gateway at scrape time, through one typed view of it
(`GatewayState`, which `dialgw.service.GatewayService` provides).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.twisted import MetricsResource
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

from dialgw.api.context import ApiRequest, context_of
from dialgw.api.errors import REASONS, json_body
from dialgw.limits.policy import COOLDOWN, DIALS_PER_SEC, MAX_CONCURRENT
from dialgw.observe import Observers
from dialgw.pool import PoolNode

log = Logger()

#: How long /healthz waits for the database before calling it down.
HEALTH_TIMEOUT_SEC = 2.0


class GatewayState(Protocol):
    """What /healthz and /metrics read of the running gateway."""

    @property
    def node_id(self) -> str: ...

    @property
    def accepting_dials(self) -> bool:
        """The API is up (store open, adoption done) and not stopping."""

    @property
    def nodes(self) -> Iterable[PoolNode]:
        """The FreeSWITCH nodes of the pool."""

    @property
    def rate_limits_degraded(self) -> bool:
        """Whether a shared limiter stands in locally (Redis unreachable)."""

    @property
    def webhook_results(self) -> Mapping[str, int]:
        """Webhook attempts since start, by result."""

    @property
    def webhook_backlog(self) -> int:
        """Events waiting for delivery, as last counted."""

    def census(self) -> Mapping[tuple[str, str], int]:
        """Followed sessions by (FreeSWITCH node, status)."""

    def ping_database(self) -> Deferred[object]:
        """Fires when the database answers."""


async def health(state: GatewayState, clock: IReactorTime) -> dict[str, object]:
    """The state of each part; ``status`` is ``ok`` when dials can work.

    ``ok`` needs the database to answer and at least one FreeSWITCH node
    ready; anything else is ``unavailable`` (503).
    """
    try:
        await state.ping_database().addTimeout(HEALTH_TIMEOUT_SEC, clock)
        database = "ok"
    except Exception as error:
        database = f"error: {type(error).__name__}"
    nodes = {node.name: "ready" if node.link.ready else "disconnected" for node in state.nodes}
    accepting = state.accepting_dials
    ok = database == "ok" and "ready" in nodes.values() and accepting
    return {
        "status": "ok" if ok else "unavailable",
        "node": state.node_id,
        "accepting_dials": accepting,
        "database": database,
        "freeswitch": nodes,
        "webhook_backlog": state.webhook_backlog,
        "rate_limits": "degraded (Redis unreachable)" if state.rate_limits_degraded else "ok",
    }

# Every label value of every metric comes from a closed set: anything a
# client makes up (a method, a path, a status) is counted as ``other``, or
# anyone could grow /metrics without bound. (Node names come from the
# config; session statuses and webhook results from the code.)

_ROUTES = (
    (re.compile(r"^/api/v1/dial/?$"), "/api/v1/dial"),
    (re.compile(r"^/api/v1/dial/[^/]+/events/?$"), "/api/v1/dial/{session_uuid}/events"),
    (re.compile(r"^/api/v1/dial/[^/]+/?$"), "/api/v1/dial/{session_uuid}"),
    (re.compile(r"^/healthz$"), "/healthz"),
    (re.compile(r"^/metrics$"), "/metrics"),
    (re.compile(r"^/api/v1/openapi\.json$"), "/api/v1/openapi.json"),
)

#: The methods counted by name; any other is ``other``.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})

#: The limits a 429 is counted under; any other is ``other``.
_LIMITS = frozenset({DIALS_PER_SEC, MAX_CONCURRENT, COOLDOWN})

#: POST /dial answers by what they mean for the caller.
_DIAL_OUTCOMES = {202: "accepted", 429: "rate_limited", 503: "no_capacity", 500: "error"}


def route_of(path: str) -> str:
    """The route template of a path (bounded label values for metrics)."""
    for pattern, name in _ROUTES:
        if pattern.match(path):
            return name
    return "other"


def method_label(method: str) -> str:
    """A method as a label value: a standard one, else ``other``."""
    return method if method in _METHODS else "other"


def status_label(status: int) -> str:
    """A status as a label value: one with a reason phrase, else ``other``."""
    return str(status) if status in RESPONSES or status in REASONS else "other"


class Metrics:
    """The gateway's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dialgw_api_requests", "API requests by route, method and status",
            ["route", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "dialgw_api_request_seconds", "API request latency by route", ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.dials = Counter(
            "dialgw_dials", "POST /dial answers by outcome", ["outcome"], registry=self.registry
        )
        self.rate_limited = Counter(
            "dialgw_ratelimit_rejections", "Dials refused by a rate limit, by limit", ["limit"],
            registry=self.registry,
        )

    def observe(self, method: str, path: str, status: int, seconds: float, limit: str | None) -> None:
        route = route_of(path)
        self.requests.labels(route, method_label(method), status_label(status)).inc()
        self.latency.labels(route).observe(seconds)
        if route == "/api/v1/dial" and method == "POST":
            self.dials.labels(_DIAL_OUTCOMES.get(status, "rejected")).inc()
            if status == 429:
                self.rate_limited.labels(limit if limit in _LIMITS else "other").inc()

    def add_collector(self, collector: GatewayCollector) -> None:
        self.registry.register(collector)


class GatewayCollector:
    """Gauges read from the running gateway when Prometheus scrapes."""

    def __init__(self, state: GatewayState) -> None:
        self._state = state

    def collect(self) -> Iterable[GaugeMetricFamily]:
        state = self._state
        connected = GaugeMetricFamily(
            "dialgw_fs_node_connected", "1 if the FreeSWITCH node's ESL connection is ready", labels=["node"]
        )
        free = GaugeMetricFamily(
            "dialgw_fs_node_free_channels", "Channels the gateway may still use on the node", labels=["node"]
        )
        for node in state.nodes:
            connected.add_metric([node.name], 1.0 if node.link.ready else 0.0)
            free.add_metric([node.name], float(max(node.free_channels(), 0)))
        yield connected
        yield free
        live = GaugeMetricFamily(
            "dialgw_live_sessions", "Sessions this node follows, by FreeSWITCH node and status",
            labels=["fs_node", "status"],
        )
        for (fs_node, status), count in sorted(state.census().items()):
            live.add_metric([fs_node, status], float(count))
        yield live
        deliveries = GaugeMetricFamily(
            "dialgw_webhook_attempts", "Webhook attempts since start, by result", labels=["result"]
        )
        for result, count in sorted(state.webhook_results.items()):
            deliveries.add_metric([result], float(count))
        yield deliveries
        yield GaugeMetricFamily(
            "dialgw_webhook_backlog", "Webhooks waiting for delivery (outbox)", value=float(state.webhook_backlog)
        )
        yield GaugeMetricFamily(
            "dialgw_redis_degraded", "1 while Redis is unreachable and limits are local",
            value=1.0 if state.rate_limits_degraded else 0.0,
        )


class RequestLog(Resource):
    """Wraps the API resource: one log line and the metrics per request."""

    isLeaf = True

    def __init__(self, wrapped: IResource, metrics: Metrics | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # untyped in Twisted
        #: What answers the requests: the API, or a 503 while it is not ready.
        self.wrapped = wrapped
        self._metrics = metrics
        self._clock = clock
        #: Requests being answered right now.
        self.in_flight = 0
        self._drained: Observers[None] = Observers()

    def drained(self) -> Deferred[None]:
        """Fires when no request is in flight (at once if none is)."""
        if self.in_flight == 0:
            return succeed(None)
        return self._drained.when()

    def render(self, request: ApiRequest) -> bytes | int:
        started = self._clock()
        self.in_flight += 1
        request.notifyFinish().addBoth(lambda _: self._finished(request, started))
        rendered: bytes | int = self.wrapped.render(request)  # type: ignore[no-untyped-call]  # IResource is untyped
        return rendered

    def _finished(self, request: ApiRequest, started: float) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._drained.fire(None)
        seconds = self._clock() - started
        method = request.method.decode("ascii", "replace")
        path = request.path.decode("utf-8", "replace")
        status = request.code
        context = context_of(request)
        log.info(
            "{request_id} {app_id} {method} {path} {status} {latency_ms:.1f}ms",
            request_id=context.request_id or "-",
            app_id=context.app_id or "-",
            method=method[:20],
            path=path[:200],
            status=status,
            latency_ms=seconds * 1000,
        )
        if self._metrics is not None:
            self._metrics.observe(method, path, status, seconds, context.limit)


class Health(Resource):
    """``GET /healthz``: 200 when the database answers and a switch is connected."""

    isLeaf = True

    def __init__(self, state: GatewayState, clock: IReactorTime) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # untyped in Twisted
        self._state = state
        self._clock = clock

    def render_GET(self, request: ApiRequest) -> int:
        d = Deferred.fromCoroutine(health(self._state, self._clock))

        def answer(report: dict[str, object]) -> None:
            request.setResponseCode(200 if report["status"] == "ok" else 503)
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"cache-control", b"no-store")
            request.write(json_body(report))
            request.finish()

        def failed(failure: Failure) -> None:
            log.failure("health check failed", failure)
            request.setResponseCode(503)
            request.setHeader(b"content-type", b"application/json")
            request.write(b'{"status":"error"}')
            request.finish()

        d.addCallbacks(answer, failed)
        return NOT_DONE_YET


class Root(Resource):
    """The site root: ``/healthz``, ``/metrics`` (if served here), else the API."""

    def __init__(self, api: IResource | None, ops: Mapping[bytes, IResource]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # untyped in Twisted
        self._api = api
        self._ops = ops

    def getChildWithDefault(self, name: bytes, request: ApiRequest) -> IResource:
        if name in self._ops and not request.postpath:
            return self._ops[name]
        if self._api is None or request.prepath is None or request.postpath is None:
            child: IResource = super().getChildWithDefault(name, request)  # type: ignore[no-untyped-call]
            return child
        # The API sees the whole path, as if it were the root itself.
        request.postpath.insert(0, request.prepath.pop())
        return self._api

    def render(self, request: ApiRequest) -> bytes | int:
        rendered: bytes | int
        if self._api is None:
            rendered = super().render(request)  # type: ignore[no-untyped-call]  # untyped in Twisted
        else:
            rendered = self._api.render(request)  # type: ignore[no-untyped-call]  # IResource is untyped
        return rendered


def ops_resources(state: GatewayState, clock: IReactorTime, metrics: Metrics | None) -> dict[bytes, IResource]:
    """``/healthz`` and (unless disabled) ``/metrics``."""
    resources: dict[bytes, IResource] = {b"healthz": Health(state, clock)}
    if metrics is not None:
        resources[b"metrics"] = MetricsResource(registry=metrics.registry)  # type: ignore[no-untyped-call]
    return resources
