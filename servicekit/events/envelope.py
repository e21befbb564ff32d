"""The event a service publishes about a checkout, and its wire form (JSON)."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry import propagate


def _now() -> str:
    return datetime.now(UTC).isoformat()


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, if tracing is on and a span is current."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


@dataclass(frozen=True, slots=True)
class Event:
    """``type`` happened to ``checkout_id``; ``data`` says what (the plan, the order, the result).

    ``causation_id`` is the ``message_id`` of the event this one reacts to; ``traceparent``
    carries the checkout's trace across the broker, so one checkout is one trace.
    """

    type: str
    checkout_id: str
    source: str
    data: dict[str, Any]
    message_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    causation_id: str | None = None
    traceparent: str | None = None
    occurred_at: str = field(default_factory=_now)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        """The event a message carries; ``ValueError`` if it is not one."""
        try:
            members = json.loads(raw)
            return cls(**members)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not an event: {exc}") from exc
