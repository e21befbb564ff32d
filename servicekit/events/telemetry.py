"""What the choreography shows of itself: Prometheus counters, and spans that continue a trace.

- ``checkout_events_consumed_total{consumer,type,outcome}``: each message a consumer took, by
  outcome: ``applied``, ``duplicate`` (applied before: acknowledged, skipped), ``ignored`` (not
  this consumer's turn) or ``dead_lettered``.
- ``checkout_events_published_total{type}``: events the relay published (broker-confirmed).

With tracing on, applying a message is a consumer span whose parent is the message's
``traceparent``, and the events it causes carry that span's: one checkout is one trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import propagate
from opentelemetry.trace import SpanKind, TracerProvider
from prometheus_client import CollectorRegistry, Counter

from servicekit.events.envelope import Event

OUTCOMES = ("applied", "duplicate", "ignored", "dead_lettered")


class EventTelemetry:
    """Counters in ``registry`` (None: a registry of its own) and spans of ``tracer_provider``."""

    def __init__(
        self,
        consumer: str,
        registry: CollectorRegistry | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        registry = registry or CollectorRegistry()
        self.consumer = consumer
        self.consumed = Counter(
            "checkout_events_consumed",
            "Checkout events a consumer took, by type and outcome.",
            ["consumer", "type", "outcome"],
            registry=registry,
        )
        self.published = Counter(
            "checkout_events_published",
            "Checkout events the relay published, confirmed by the broker.",
            ["type"],
            registry=registry,
        )
        self.tracer = tracer_provider.get_tracer(__name__) if tracer_provider else None

    def took(self, event_type: str, outcome: str) -> None:
        self.consumed.labels(self.consumer, event_type, outcome).inc()

    def sent(self, event_type: str) -> None:
        self.published.labels(event_type).inc()

    @contextlib.contextmanager
    def applying(self, event: Event) -> Iterator[None]:
        """A consumer span for applying ``event``, child of the span that published it."""
        if self.tracer is None:
            yield
            return
        parent = propagate.extract({"traceparent": event.traceparent} if event.traceparent else {})
        with self.tracer.start_as_current_span(
            f"{event.type} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation": "process",
                "messaging.message.id": event.message_id,
                "messaging.destination.name": event.type,
                "checkout.id": event.checkout_id,
                "checkout.consumer": self.consumer,
            },
        ):
            yield
