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
"""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_fastapi_instrumentator import Instrumentator

METRICS_PATH = "/metrics"


def install_metrics(app: FastAPI, registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """Count ``app``'s requests in ``registry`` (a new one by default) and serve it at ``/metrics``."""
    registry = registry or CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    Instrumentator(registry=registry, excluded_handlers=[f"^{METRICS_PATH}$"]).instrument(
        app
    ).expose(app, endpoint=METRICS_PATH, include_in_schema=False)
    return registry
