"""The journal's records: a checkout's and its steps' rows in memory, and the changes to them.

``CheckoutRecord`` and ``StepRecord`` hold exactly the columns of the ``checkout`` and ``step``
tables (the SQLModel models in ``orchestrator.models`` are the schema; a test keeps the two
alike), built straight from rows: no ORM instance, no validation (the API validated the values
before they were first written). A ``Transition`` is what one journal write changes; the runner
says what it wants as transitions, the journal commits them, then applies them to the records,
so the records are always what the journal holds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from orchestrator.statuses import CheckoutStatus, StepStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class CheckoutRecord:
    """One checkout: the request, its outcome, its idempotency record and who drives it."""

    id: uuid.UUID
    status: str
    customer_id: str
    customer: str  # JSON of the customer as posted
    items: str  # JSON of the lines, prices as decimal strings
    currency: str
    total_cents: int
    points: int
    step_order: str
    error: str | None  # JSON: why the checkout failed
    created_at: datetime
    updated_at: datetime
    idempotency_key_hash: str | None
    request_fingerprint: str | None
    response_status: int | None
    response_body: str | None
    lease_owner: str | None
    lease_expires_at: float | None  # epoch seconds
    lease_token: int
    next_attempt_at: float | None  # epoch seconds
    deadline_at: float | None  # epoch seconds
    past_pivot: bool
    cancel_requested: bool
    coordination: str  # "orchestration" or "choreography"
    last_event: str | None  # JSON: the latest event of a choreographed checkout


@dataclass(slots=True)
class StepRecord:
    """One step of a checkout, committed before and after every attempt."""

    id: int | None
    checkout_id: uuid.UUID
    name: str
    position: int
    status: str
    attempts: int
    http_status: int | None
    result: str | None  # JSON summary of the service's answer (ids the compensation needs)
    error: str | None  # JSON of the last error
    started_at: datetime | None
    finished_at: datetime | None
    compensated_at: datetime | None


CHECKOUT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CheckoutRecord))
STEP_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(StepRecord))

# A checkout and its steps, as the journal holds them.
Loaded = tuple[CheckoutRecord, list[StepRecord]]


def new_checkout(
    *,
    customer_id: str,
    customer: str,
    items: str,
    currency: str,
    total_cents: int,
    points: int,
    step_order: str,
    deadline_at: float | None,
    idempotency_key_hash: str | None = None,
    request_fingerprint: str | None = None,
    coordination: str = "orchestration",
) -> CheckoutRecord:
    """A checkout about to be recorded: pending, unleased, nothing answered yet."""
    now = utcnow()
    return CheckoutRecord(
        id=uuid.uuid4(),
        status=CheckoutStatus.pending,
        customer_id=customer_id,
        customer=customer,
        items=items,
        currency=currency,
        total_cents=total_cents,
        points=points,
        step_order=step_order,
        error=None,
        created_at=now,
        updated_at=now,
        idempotency_key_hash=idempotency_key_hash,
        request_fingerprint=request_fingerprint,
        response_status=None,
        response_body=None,
        lease_owner=None,
        lease_expires_at=None,
        lease_token=0,
        next_attempt_at=None,
        deadline_at=deadline_at,
        past_pivot=False,
        cancel_requested=False,
        coordination=coordination,
        last_event=None,
    )


def pending_step(checkout_id: uuid.UUID, name: str, position: int) -> StepRecord:
    """A step as a new checkout records it: not started. Its ``id`` is the database's."""
    return StepRecord(
        None, checkout_id, name, position, StepStatus.pending, 0, None, None, None, None, None, None
    )


@dataclass(slots=True)
class Transition:
    """What one journal write changes: columns of the checkout, and of some of its steps."""

    checkout: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of_step(cls, name: str, **values: Any) -> Transition:
        """A change to the step ``name``."""
        return cls(steps={name: values})

    @classmethod
    def of_checkout(cls, **values: Any) -> Transition:
        """A change to the checkout's own columns."""
        return cls(checkout=values)

    def then(self, later: Transition) -> Transition:
        """This transition followed by ``later``: where both set a column, ``later`` wins."""
        steps = dict(self.steps)
        for name, values in later.steps.items():
            steps[name] = steps.get(name, {}) | values
        return Transition(self.checkout | later.checkout, steps)

    def __bool__(self) -> bool:
        return bool(self.checkout) or any(self.steps.values())

    def apply(self, checkout: CheckoutRecord, steps: dict[str, StepRecord]) -> None:
        """Set this transition's values on the records (once the journal has committed it)."""
        for column, value in self.checkout.items():
            setattr(checkout, column, value)
        for name, values in self.steps.items():
            step = steps[name]
            for column, value in values.items():
                setattr(step, column, value)
