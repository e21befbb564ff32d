"""Helpers of the observability tests: reading /metrics, in-memory spans, fault-injecting suites."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from servicekit.tracing import use_tracer_provider


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels`` in a /metrics page, or None."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return None


async def scrape(client: httpx.AsyncClient) -> str:
    """GET /metrics, checking it is Prometheus text."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return response.text


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Apps built while this fixture is active trace to an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with use_tracer_provider(provider):
        yield exporter
    provider.shutdown()


class ProcessBoundary(httpx.AsyncBaseTransport):
    """Runs a service in a fresh context, as in another process: only headers carry the trace.

    In one process the service would otherwise see the caller's current span. Records the
    ``traceparent`` header of every request.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.traceparents: list[str | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.traceparents.append(request.headers.get("traceparent"))
        call = self.inner.handle_async_request(request)
        return await asyncio.create_task(call, context=contextvars.Context())
