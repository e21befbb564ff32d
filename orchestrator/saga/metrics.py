"""The saga's Prometheus families, ``checkout_*`` and ``step_*``, on the orchestrator app's registry.

- ``checkout_finished_total{status}``: checkouts that reached a final status, ``completed`` or
  ``failed`` (failed ones were compensated).
- ``checkout_parked_total``: times a checkout was parked because a step kept failing.
- ``checkout_in_flight``: checkouts this replica is driving now.
- ``step_duration_seconds{step,outcome}``: one observation per call of a step or of its
  compensation; ``outcome`` is one of ``OUTCOMES``.
- ``step_retries_total{step}``: calls repeated after a transient failure, within one drive
  (a parked checkout's resumption counts in ``checkout_parked_total`` instead).
- ``step_compensations_total{step}``: steps undone.
"""

from __future__ import annotations

from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from orchestrator.statuses import TERMINAL_STATUSES

M = TypeVar("M", bound=MetricWrapperBase)

OUTCOMES = (
    "succeeded",
    "transient",  # a retryable failure: retried, or the checkout parked
    "refused",  # the service refused for good: the checkout fails
    "compensated",
    "compensation_transient",
    "compensation_refused",  # left for an operator
    "error",  # an unexpected exception
)
FINAL_STATUSES = tuple(sorted(TERMINAL_STATUSES))


class SagaMetrics:
    """The ``checkout_*`` and ``step_*`` families of one orchestrator app."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.checkouts = Counter(
            "checkout_finished",
            "Checkouts that reached a final status.",
            ["status"],
            registry=registry,
        )
        for status in FINAL_STATUSES:
            self.checkouts.labels(status=status)
        self.parked = Counter(
            "checkout_parked",
            "Times a checkout was parked because a step kept failing transiently.",
            registry=registry,
        )
        self.in_flight = Gauge(
            "checkout_in_flight", "Checkouts this replica is driving now.", registry=registry
        )
        self.step_duration = Histogram(
            "step_duration_seconds",
            "Duration of each call of a step or of its compensation, by outcome.",
            ["step", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "step_retries",
            "Step calls repeated after a transient failure.",
            ["step"],
            registry=registry,
        )
        self.compensations = Counter(
            "step_compensations", "Steps undone by compensation.", ["step"], registry=registry
        )
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}

    def child(self, family: M, *labels: str) -> M:
        """``family.labels(*labels)``, kept: ``labels`` takes a lock and builds its key on every
        call, several times per checkout. Bounded: steps, outcomes and statuses are fixed sets."""
        key = (family, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = family.labels(*labels)
        return found  # type: ignore[return-value]
