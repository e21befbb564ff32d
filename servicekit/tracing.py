"""OpenTelemetry tracing, off unless the standard ``OTEL_*`` variables switch it on.

Tracing is on when ``OTEL_TRACES_EXPORTER`` names exporters (``otlp``, ``console``, comma
separated), or, with it unset, when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set; ``OTEL_TRACES_EXPORTER=none`` or
``OTEL_SDK_DISABLED=true`` keep it off. OTLP goes over HTTP/protobuf (e.g. Jaeger on port 4318);
the SDK reads the rest (endpoint, headers, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``). With tracing off nothing is instrumented: no span, no header, no thread.

Each app gets its tracer provider passed explicitly instead of through OpenTelemetry's global
one, which can be set only once per process: tests build many apps in one process, and inject a
provider (an in-memory exporter) with ``use_tracer_provider``. The W3C ``traceparent`` goes out on
the orchestrator's calls (aiohttp: ``client_trace_configs``; httpx, in tests: ``instrument_client``)
and the services' server spans continue it (``instrument_app``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import FastAPI
from httpx import AsyncClient
from opentelemetry.trace import Span, TracerProvider

from servicekit.requestid import REQUEST_ID_HEADER, current_request_id

if TYPE_CHECKING:
    from aiohttp import TraceConfig

EXPORTERS = ("otlp", "console")
# Probes and scrapes would drown the traces that matter.
UNTRACED_PATHS = "/healthz$,/readyz$,/metrics$"

_injected: list[TracerProvider] = []
_from_env: dict[str, TracerProvider | None] = {}


def requested_exporters(environ: Mapping[str, str]) -> list[str]:
    """The span exporters ``environ``'s ``OTEL_*`` variables ask for; empty means tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [name for name in names if name]
    if not names:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return ["otlp"] if endpoint and endpoint.strip() else []
    if names == ["none"]:
        return []
    unknown = sorted(set(names) - set(EXPORTERS))
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER names unsupported exporters {unknown}: use {', '.join(EXPORTERS)} or none"
        )
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if "otlp" in names and protocol.strip() != "http/protobuf":
        raise ValueError(f"OTLP protocol {protocol!r} is not supported: use http/protobuf")
    return names


def build_tracer_provider(service: str, exporters: list[str]) -> TracerProvider:
    """An SDK provider exporting in batches to ``exporters``, named ``service`` unless the env names it."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    provider = SdkTracerProvider(resource=resource)
    for name in exporters:
        exporter = OTLPSpanExporter() if name == "otlp" else ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def tracer_provider_for(service: str) -> TracerProvider | None:
    """The provider an app of ``service`` traces to: an injected one, one from the env, or None (off).

    A provider built from the env is kept for the process, so building apps again (tests) starts
    no more exporter threads; it flushes at exit.
    """
    if _injected:
        return _injected[-1]
    if service not in _from_env:
        exporters = requested_exporters(os.environ)
        _from_env[service] = build_tracer_provider(service, exporters) if exporters else None
    return _from_env[service]


@contextmanager
def use_tracer_provider(provider: TracerProvider) -> Iterator[TracerProvider]:
    """Apps built inside the block trace to ``provider``, whatever the env says (tests)."""
    _injected.append(provider)
    try:
        yield provider
    finally:
        _injected.remove(provider)


def _tag_request_id(span: Span, _scope: dict[str, Any]) -> None:
    request_id = current_request_id()
    if request_id and span.is_recording():
        span.set_attribute(f"http.request.header.{REQUEST_ID_HEADER.lower()}", [request_id])


def instrument_app(app: FastAPI, provider: TracerProvider) -> None:
    """Server spans for ``app``'s requests, continuing a trace whose ``traceparent`` came in."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=UNTRACED_PATHS,
        exclude_spans=["receive", "send"],
        server_request_hook=_tag_request_id,
    )


def flush_on_shutdown(app: FastAPI, provider: TracerProvider) -> None:
    """Export the spans still queued when ``app``'s lifespan ends.

    The SDK flushes at interpreter exit, but uvicorn, once shut down, re-raises the SIGTERM it
    caught, so the process ends by the signal and exit handlers never run.
    """
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is None:
        return
    lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def flushing(target: Any) -> AsyncIterator[Any]:
        try:
            async with lifespan(target) as state:
                yield state
        finally:
            await anyio.to_thread.run_sync(force_flush)

    app.router.lifespan_context = flushing


def instrument_client(client: AsyncClient, provider: TracerProvider | None) -> None:
    """Client spans for ``client``'s calls, each sending ``traceparent``; nothing when ``provider`` is None."""
    if provider is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)


def client_trace_configs(provider: TracerProvider | None) -> list[TraceConfig]:
    """An ``aiohttp.ClientSession``'s client spans, each call sending ``traceparent``; none without ``provider``."""
    if provider is None:
        return []
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    return [create_trace_config(tracer_provider=provider)]
