"""One choreographed checkout is one trace across the broker: each service's consumer span is a
child of the span that published the event it applies, back to the request that placed it."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.choreography.helpers import eventually
from tests.conftest import BrokerUnderTest
from tests.observability.conftest import spans  # noqa: F401  (the fixture)
from tests.suite import checkout_body, running_suite

pytestmark = pytest.mark.anyio


def consumer_span(finished: list[ReadableSpan], consumer: str, event_type: str) -> ReadableSpan:
    found = [
        s
        for s in finished
        if s.kind is SpanKind.CONSUMER
        and s.attributes is not None
        and s.attributes.get("checkout.consumer") == consumer
        and s.name == f"{event_type} process"
    ]
    assert len(found) == 1, [(s.name, s.attributes) for s in finished]
    return found[0]


async def test_a_choreographed_checkout_is_one_trace(
    database_url: Any,
    broker: BrokerUnderTest,
    spans: InMemorySpanExporter,  # noqa: F811
) -> None:
    async with running_suite(database_url, everywhere=broker.settings) as suite:
        await suite.stock("SKU-001", 10)
        response = await suite.orchestrator.post("/checkouts", json=checkout_body())
        assert response.json()["status"] == "completed"
        # The journal's span of the email's event may end just after the answer.
        await eventually(lambda: _spans_at_least(spans, 7))
    finished = list(spans.get_finished_spans())
    request = next(s for s in finished if s.name == "POST /checkouts")
    trace_id = request.context.trace_id
    warehouse = consumer_span(finished, "warehouse", "checkout.placed")
    rewards = consumer_span(finished, "rewards", "step.succeeded")
    email = [
        s for s in finished if s.attributes and s.attributes.get("checkout.consumer") == "email"
    ]
    assert len(email) == 1
    # Each reaction continues the span of the one before it, across the broker.
    assert warehouse.parent is not None
    assert warehouse.parent.span_id == request.context.span_id
    assert rewards.parent is not None
    assert rewards.parent.span_id == warehouse.context.span_id
    assert email[0].parent is not None
    assert email[0].parent.span_id == rewards.context.span_id
    journal = [
        s for s in finished if s.attributes and s.attributes.get("checkout.consumer") == "journal"
    ]
    assert len(journal) == 4  # placed, and the three steps' events
    for span in (warehouse, rewards, *email, *journal):
        assert span.context.trace_id == trace_id
        assert span.attributes is not None
        assert span.attributes["checkout.id"] == response.json()["id"]


async def _spans_at_least(exporter: InMemorySpanExporter, count: int) -> bool:
    consumers = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    return len(consumers) >= count
