"""Tracing: a checkout is one trace, from the orchestrator's saga through every service it calls."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from rewards_service.main import create_app as create_rewards_app
from rewards_service.settings import Settings as RewardsSettings
from servicekit import tracing
from servicekit.tracing import build_tracer_provider, requested_exporters, use_tracer_provider
from tests.faults import faulty_suite
from tests.observability.conftest import ProcessBoundary
from tests.suite import checkout_body, running_suite


def trace_of(exporter: InMemorySpanExporter, checkout_id: str) -> list[ReadableSpan]:
    """Every span of the trace holding the checkout's span."""
    finished = exporter.get_finished_spans()
    checkout = [
        s for s in finished if s.name == "checkout" and s.attributes["checkout.id"] == checkout_id
    ]
    assert len(checkout) == 1, [s.name for s in finished]
    trace_id = checkout[0].context.trace_id
    return [s for s in finished if s.context.trace_id == trace_id]


def only(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


@pytest.mark.anyio
async def test_a_checkout_is_one_trace_continued_by_every_service(
    database_url: Callable[[str], str], spans: InMemorySpanExporter
) -> None:
    """Checkout span, one span per step, and each service's server span a child of its client span."""
    boundaries: dict[str, ProcessBoundary] = {}

    def wrap(name: str, transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        boundaries[name] = ProcessBoundary(transport)
        return boundaries[name]

    async with running_suite(database_url, wrap=wrap) as suite:
        await suite.stock("SKU-001", 10)
        response = await suite.orchestrator.post("/checkouts", json=checkout_body())
    assert response.json()["status"] == "completed"

    trace = trace_of(spans, response.json()["id"])
    request, checkout = only(trace, "POST /checkouts"), only(trace, "checkout")
    assert request.kind is SpanKind.SERVER
    assert request.parent is None
    assert checkout.parent is not None
    assert checkout.parent.span_id == request.context.span_id
    assert checkout.attributes["checkout.status"] == "completed"
    routes = {
        "warehouse": "/reservations",
        "rewards": "/accounts/{customer_id}/transactions",
        "email": "/emails",
    }
    for name, route in routes.items():
        step = only(trace, f"step {name}")
        assert step.parent is not None
        assert step.parent.span_id == checkout.context.span_id
        assert step.attributes["checkout.attempt"] == 1
        assert step.attributes["checkout.outcome"] == "succeeded"
        client = next(
            s
            for s in trace
            if s.kind is SpanKind.CLIENT and s.parent.span_id == step.context.span_id
        )
        server = only(trace, f"POST {route}")
        assert server.kind is SpanKind.SERVER
        assert server.parent is not None
        assert server.parent.is_remote
        assert server.parent.span_id == client.context.span_id
        assert server.attributes["http.route"] == route
        # What went over the wire: the W3C header naming the client span.
        sent = client.context
        assert boundaries[name].traceparents == [
            f"00-{sent.trace_id:032x}-{sent.span_id:016x}-{int(sent.trace_flags):02x}"
        ]
        assert sent.trace_flags.sampled


@pytest.mark.anyio
async def test_retries_refusals_and_compensations_have_their_own_spans(
    database_url: Callable[[str], str], spans: InMemorySpanExporter
) -> None:
    """A 503 then a success are two warehouse spans; a refusal by rewards adds a compensation span."""
    async with faulty_suite(database_url) as (suite, faults):
        faults["warehouse"].add("POST", "/reservations", "status", status=503)
        faults["rewards"].add("POST", "/accounts/*/transactions", "status", status=422)
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()
    assert checkout["status"] == "failed"

    trace = trace_of(spans, checkout["id"])
    attempts = sorted(
        (s for s in trace if s.name == "step warehouse"),
        key=lambda s: s.attributes["checkout.attempt"],
    )
    outcomes = [
        (s.attributes["checkout.attempt"], s.attributes["checkout.outcome"]) for s in attempts
    ]
    assert outcomes == [(1, "transient"), (2, "succeeded")]
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert attempts[0].events[0].name == "exception"
    refused = only(trace, "step rewards")
    assert refused.attributes["checkout.outcome"] == "refused"
    assert refused.status.status_code is StatusCode.ERROR
    compensation = only(trace, "compensate warehouse")
    assert compensation.attributes["checkout.outcome"] == "compensated"
    assert only(trace, "checkout").attributes["checkout.status"] == "failed"


def without_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test sees no OTEL_* variable, whatever the environment, and no provider built from one."""
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(tracing, "_from_env", {})


@pytest.mark.anyio
async def test_without_otel_variables_nothing_is_traced(
    database_url: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no OTEL_* variable and no injected provider, calls carry no traceparent."""
    without_otel_variables(monkeypatch)
    boundaries: dict[str, ProcessBoundary] = {}

    def wrap(name: str, transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        boundaries[name] = ProcessBoundary(transport)
        return boundaries[name]

    async with running_suite(database_url, wrap=wrap) as suite:
        await suite.stock("SKU-001", 10)
        response = await suite.orchestrator.post("/checkouts", json=checkout_body())
    assert response.json()["status"] == "completed"
    assert all(b.traceparents == [None] for b in boundaries.values())


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ["otlp", "console"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://jaeger:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, []),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://j:4318"}, []),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_standard_otel_variables_switch_tracing_on(
    environ: dict[str, str], exporters: list[str]
) -> None:
    """Tracing is on only when OTEL_TRACES_EXPORTER or an OTLP endpoint asks for it."""
    assert requested_exporters(environ) == exporters


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    ],
)
def test_unsupported_exporters_stop_the_service_at_start(environ: dict[str, Any]) -> None:
    """An exporter or OTLP protocol the suite does not ship is refused, naming what is supported."""
    with pytest.raises(ValueError, match="supported"):
        requested_exporters(environ)


def test_a_provider_from_the_env_names_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider built for a service exports in batches and carries its name as service.name."""
    without_otel_variables(monkeypatch)
    provider = build_tracer_provider("warehouse", ["console"])
    try:
        assert isinstance(provider, SdkTracerProvider)
        assert provider.resource.attributes["service.name"] == "warehouse"
    finally:
        provider.shutdown()


@pytest.mark.anyio
async def test_spans_still_queued_are_exported_when_the_app_stops(tmp_path: Any) -> None:
    """A batch exporter waiting a minute still gets the spans once the app's lifespan ends."""
    exporter = InMemorySpanExporter()
    provider = SdkTracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    with use_tracer_provider(provider):
        app = create_rewards_app(RewardsSettings(database_url=f"sqlite:///{tmp_path}/r.db"))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rewards.test") as client:
            assert (await client.get("/accounts/c-1")).status_code == 404
        assert exporter.get_finished_spans() == ()
    assert [s.name for s in exporter.get_finished_spans()] == ["GET /accounts/{customer_id}"]
    provider.shutdown()


@pytest.mark.anyio
async def test_steps_run_at_once_are_sibling_spans_that_overlap(
    database_url: Callable[[str], str], spans: InMemorySpanExporter
) -> None:
    """`warehouse,rewards+email`: rewards' and email's spans share the checkout span and overlap."""
    async with faulty_suite(database_url, checkout_steps="warehouse,rewards+email") as (
        suite,
        faults,
    ):
        faults["rewards"].add("POST", "/accounts/*/transactions", "delay", delay=0.2)
        faults["email"].add("POST", "/emails", "delay", delay=0.2)
        response = await suite.orchestrator.post("/checkouts", json=checkout_body())
    assert response.json()["status"] == "completed"

    trace = trace_of(spans, response.json()["id"])
    checkout = only(trace, "checkout")
    warehouse, rewards, email = (only(trace, f"step {name}") for name in STEP_NAMES)
    for step in (warehouse, rewards, email):
        assert step.parent is not None
        assert step.parent.span_id == checkout.context.span_id
    assert warehouse.end_time is not None
    assert rewards.start_time is not None
    assert email.start_time is not None
    assert rewards.end_time is not None
    assert email.end_time is not None
    # Each after the reservation, both under way at once.
    assert min(rewards.start_time, email.start_time) >= warehouse.end_time
    assert max(rewards.start_time, email.start_time) < min(rewards.end_time, email.end_time)


STEP_NAMES = ("warehouse", "rewards", "email")
