"""What operators see: ``/healthz``, ``/metrics`` and one log line per request.

The API resource is wrapped, not modified: `RequestLog` notes each request's
start, and when it finishes writes one log line (request id, app id,
method, path, status, latency) and the request metrics. Gauges are read from
the live objects (pool, tracker, webhook sender, limiter) at scrape time.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.twisted import MetricsResource
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

log = Logger()

_ROUTES = (
    (re.compile(r"^/api/v1/dial/?$"), "/api/v1/dial"),
    (re.compile(r"^/api/v1/dial/[^/]+/events/?$"), "/api/v1/dial/{session_uuid}/events"),
    (re.compile(r"^/api/v1/dial/[^/]+/?$"), "/api/v1/dial/{session_uuid}"),
    (re.compile(r"^/healthz$"), "/healthz"),
    (re.compile(r"^/metrics$"), "/metrics"),
)

#: POST /dial answers by what they mean for the caller.
_DIAL_OUTCOMES = {202: "accepted", 429: "rate_limited", 503: "no_capacity", 500: "error"}


def route_of(path: str) -> str:
    """The route template of a path (bounded label values for metrics)."""
    for pattern, name in _ROUTES:
        if pattern.match(path):
            return name
    return "other"


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
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if route == "/api/v1/dial" and method == "POST":
            self.dials.labels(_DIAL_OUTCOMES.get(status, "rejected")).inc()
            if status == 429:
                self.rate_limited.labels(limit or "unknown").inc()

    def add_collector(self, collector: Any) -> None:
        self.registry.register(collector)


class GatewayCollector:
    """Gauges read from the running gateway when Prometheus scrapes."""

    def __init__(self, gateway: Any) -> None:
        self._gateway = gateway

    def collect(self) -> Iterable[GaugeMetricFamily]:
        gw = self._gateway
        connected = GaugeMetricFamily(
            "dialgw_fs_node_connected", "1 if the FreeSWITCH node's ESL connection is ready", labels=["node"]
        )
        free = GaugeMetricFamily(
            "dialgw_fs_node_free_channels", "Channels the gateway may still use on the node", labels=["node"]
        )
        for node in gw.pool or ():
            connected.add_metric([node.name], 1.0 if node.link.ready else 0.0)
            free.add_metric([node.name], float(max(node.free_channels(), 0)))
        yield connected
        yield free
        live = GaugeMetricFamily(
            "dialgw_live_sessions", "Sessions this node follows, by FreeSWITCH node and status",
            labels=["fs_node", "status"],
        )
        for (fs_node, status), count in sorted((gw.tracker.census() if gw.tracker else {}).items()):
            live.add_metric([fs_node, status], float(count))
        yield live
        deliveries = GaugeMetricFamily(
            "dialgw_webhook_attempts", "Webhook attempts since start, by result", labels=["result"]
        )
        for result, count in sorted((gw.webhooks.results if gw.webhooks else {}).items()):
            deliveries.add_metric([result], float(count))
        yield deliveries
        yield GaugeMetricFamily(
            "dialgw_webhook_backlog", "Webhooks waiting for delivery (outbox)", value=float(gw.backlog)
        )
        limiter = getattr(gw, "limiter", None)
        yield GaugeMetricFamily(
            "dialgw_redis_degraded", "1 while Redis is unreachable and limits are local",
            value=1.0 if limiter is not None and getattr(limiter, "degraded", False) else 0.0,
        )


class RequestLog(Resource):
    """Wraps the API resource: one log line and the metrics per request."""

    isLeaf = True

    def __init__(self, wrapped: Resource, metrics: Metrics | None, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._wrapped = wrapped
        self._metrics = metrics
        self._clock = clock
        #: Requests being answered right now.
        self.in_flight = 0
        self._drain_waiters: list[Deferred] = []

    def drained(self) -> Deferred:
        """Fires when no request is in flight (at once if none is)."""
        waiter: Deferred = Deferred()
        if self.in_flight == 0:
            waiter.callback(None)
        else:
            self._drain_waiters.append(waiter)
        return waiter

    def render(self, request):
        started = self._clock()
        self.in_flight += 1
        request.notifyFinish().addBoth(lambda _: self._finished(request, started))
        return self._wrapped.render(request)

    def _finished(self, request, started: float) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            waiters, self._drain_waiters = self._drain_waiters, []
            for waiter in waiters:
                waiter.callback(None)
        seconds = self._clock() - started
        method = request.method.decode("ascii", "replace")
        path = request.path.decode("utf-8", "replace")
        status = request.code
        log.info(
            "{request_id} {app_id} {method} {path} {status} {latency_ms:.1f}ms",
            request_id=_header(request.responseHeaders, b"x-request-id") or "-",
            app_id=getattr(request, "dialgw_app_id", None) or "-",
            method=method,
            path=path[:200],
            status=status,
            latency_ms=seconds * 1000,
        )
        if self._metrics is not None:
            self._metrics.observe(method, path, status, seconds, getattr(request, "dialgw_limit", None))


def _header(headers, name: bytes) -> str | None:
    values = headers.getRawHeaders(name)
    return values[-1].decode("latin-1") if values else None


class Health(Resource):
    """``GET /healthz``: 200 when the database answers and a switch is connected."""

    isLeaf = True

    def __init__(self, gateway: Any) -> None:
        super().__init__()
        self._gateway = gateway

    def render_GET(self, request):
        d = Deferred.fromCoroutine(self._gateway.health())

        def answer(report: dict) -> None:
            request.setResponseCode(200 if report["status"] == "ok" else 503)
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"cache-control", b"no-store")
            request.write(json.dumps(report, separators=(",", ":")).encode())
            request.finish()

        def failed(failure) -> None:
            log.failure("health check failed", failure)
            request.setResponseCode(503)
            request.setHeader(b"content-type", b"application/json")
            request.write(b'{"status":"error"}')
            request.finish()

        d.addCallbacks(answer, failed)
        return NOT_DONE_YET


class Root(Resource):
    """The site root: ``/healthz``, ``/metrics`` (if served here), else the API."""

    def __init__(self, api: Resource | None, ops: dict[bytes, Resource]) -> None:
        super().__init__()
        self._api = api
        self._ops = ops

    def getChildWithDefault(self, name: bytes, request) -> Resource:
        if name in self._ops and not request.postpath:
            return self._ops[name]
        if self._api is None:
            return super().getChildWithDefault(name, request)
        # The API sees the whole path, as if it were the root itself.
        request.postpath.insert(0, request.prepath.pop())
        return self._api

    def render(self, request):
        if self._api is None:
            return super().render(request)
        return self._api.render(request)


def ops_resources(gateway: Any, metrics: Metrics | None) -> dict[bytes, Resource]:
    """``/healthz`` and (unless disabled) ``/metrics``."""
    resources: dict[bytes, Resource] = {b"healthz": Health(gateway)}
    if metrics is not None:
        resources[b"metrics"] = MetricsResource(registry=metrics.registry)
    return resources
