"""Prometheus metrics of a service at ``/metrics`` (open, and left out of the OpenAPI schema).

Each app gets its own ``CollectorRegistry`` rather than prometheus_client's global one: tests
build many apps in one process, and a second app registering the same family in the global
registry would fail. A service runs one uvicorn worker per process (per container, per ``up``
child), so prometheus_client's multi-process mode is not used.

HTTP server families (prometheus-fastapi-instrumentator's defaults, status grouped as ``2xx``,
unmatched paths as ``handler="none"``): ``http_requests_total{handler,method,status}``,
``http_request_duration_seconds{handler,method}``, ``http_request_duration_highr_seconds``,
``http_request_size_bytes`` and ``http_response_size_bytes``; plus ``process_*`` and
``python_*`` of the process.

The families are the instrumentator's ``metrics.default()`` ones (same names, help, labels and
buckets), recorded by ``HttpMetricsMiddleware`` instead of the instrumentator's middleware: that
one matched the request against every route before handing it on (the router then matched it
again) and built a request, a response and an info object per request, about a tenth of a
service's CPU per request. Here the handler is the route the router itself chose
(``scope["route"]``), and the instrumentator's own matching is used only when the router never
ran (a request refused by a middleware in front of it, such as the body guard).
"""

from __future__ import annotations

import re
from timeit import default_timer
from typing import Any

from fastapi import FastAPI
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    Summary,
)
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator.routing import get_route_name
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METRICS_PATH = "/metrics"
# prometheus_fastapi_instrumentator.metrics.default()'s buckets.
_HIGHR_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 7.5, 10,
    30, 60, float("inf"),
)  # fmt: skip
_LOWR_BUCKETS = (0.1, 0.5, 1, float("inf"))
_CONTENT_LENGTH = b"content-length"


class HttpMetrics:
    """The HTTP server families, registered in ``registry`` as ``metrics.default()`` does."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.total = Counter(
            name="http_requests_total",
            documentation="Total number of requests by method, status and handler.",
            labelnames=("method", "status", "handler"),
            registry=registry,
        )
        self.in_size = Summary(
            name="http_request_size_bytes",
            documentation=(
                "Content length of incoming requests by handler. "
                "Only value of header is respected. Otherwise ignored. "
                "No percentile calculated. "
            ),
            labelnames=("handler",),
            registry=registry,
        )
        self.out_size = Summary(
            name="http_response_size_bytes",
            documentation=(
                "Content length of outgoing responses by handler. "
                "Only value of header is respected. Otherwise ignored. "
                "No percentile calculated. "
            ),
            labelnames=("handler",),
            registry=registry,
        )
        self.latency_highr = Histogram(
            name="http_request_duration_highr_seconds",
            documentation=(
                "Latency with many buckets but no API specific labels. "
                "Made for more accurate percentile calculations. "
            ),
            buckets=_HIGHR_BUCKETS,
            registry=registry,
        )
        self.latency_lowr = Histogram(
            name="http_request_duration_seconds",
            documentation=(
                "Latency with only few buckets by handler. "
                "Made to be only used if aggregation by handler is important. "
            ),
            buckets=_LOWR_BUCKETS,
            labelnames=("method", "handler"),
            registry=registry,
        )


def _content_length(headers: Any) -> int:
    for name, value in headers:
        if name.lower() == _CONTENT_LENGTH:
            return int(value)
    return 0


class HttpMetricsMiddleware:
    """Count and time each HTTP request by method, grouped status and route template."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics, excluded: list[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.excluded = [re.compile(pattern) for pattern in excluded]
        # (method, status class, handler) -> its labelled children: ``labels`` takes a lock and
        # builds its key on each call, four times per request. As bounded as the label values.
        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = default_timer()
        status_code = 500
        response_headers: Any = ()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                nonlocal status_code, response_headers
                status_code = message["status"]
                response_headers = message.get("headers", ())
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self._record(scope, started, status_code, response_headers)

    def _record(self, scope: Scope, started: float, status_code: int, headers: Any) -> None:
        route = scope.get("route")
        handler = getattr(route, "path", None) if route is not None else None
        if handler is None:  # the router never ran: resolve it as the instrumentator does
            handler = get_route_name(Request(scope), should_include_root_path=False)
        templated = handler is not None
        if handler is None:
            handler = Request(scope).url.path
        if any(pattern.search(handler) for pattern in self.excluded):
            return
        if not templated:
            handler = "none"
        duration = max(default_timer() - started, 0.0)
        method = scope["method"]
        key = (method, f"{str(int(status_code))[0]}xx", handler)
        children = self._children.get(key)
        if children is None:
            metrics = self.metrics
            children = self._children[key] = (
                metrics.total.labels(*key),
                metrics.in_size.labels(handler),
                metrics.out_size.labels(handler),
                metrics.latency_lowr.labels(method, handler),
            )
        total, in_size, out_size, latency = children
        total.inc()
        in_size.observe(_content_length(scope["headers"]))
        out_size.observe(_content_length(headers))
        self.metrics.latency_highr.observe(duration)
        latency.observe(duration)


def install_metrics(app: FastAPI, registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """Count ``app``'s requests in ``registry`` (a new one by default) and serve it at ``/metrics``."""
    registry = registry or CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    app.add_middleware(
        HttpMetricsMiddleware, metrics=HttpMetrics(registry), excluded=[f"^{METRICS_PATH}$"]
    )
    Instrumentator(registry=registry).expose(app, endpoint=METRICS_PATH, include_in_schema=False)
    return registry
