"""One call that gives a service its operations kit: structured logs, request ids, metrics, tracing."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry

from servicekit.logs import configure_logging
from servicekit.metrics import install_metrics
from servicekit.requestid import install_request_id
from servicekit.tracing import flush_on_shutdown, instrument_app, tracer_provider_for


@dataclass(frozen=True)
class Observability:
    """What an app's own telemetry hangs on."""

    registry: CollectorRegistry
    tracer_provider: TracerProvider | None  # None: tracing is off


def install_observability(app: FastAPI, *, service: str) -> Observability:
    """Logs, ``/metrics``, server spans (when tracing is on) and ``X-Request-ID`` for ``app``.

    Call it once the app exists and before it serves; ``service`` names it in traces.
    """
    configure_logging()
    registry = install_metrics(app)
    provider = tracer_provider_for(service)
    if provider is not None:
        instrument_app(app, provider)
        flush_on_shutdown(app, provider)
    # Last: it wraps everything above, so every answer (a 500 included) carries the id.
    install_request_id(app)
    return Observability(registry, provider)
