"""Tables of the orchestrator's own database: checkouts and their step journal.

The schema (migrations compare against these models); the journal reads and writes the rows in
plain SQL as ``orchestrator.journal.records`` (``orchestrator.journal.checkouts``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Index, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from orchestrator.statuses import CheckoutStatus, StepStatus
from servicekit.db.values import UTCDateTime
from servicekit.events.tables import (
    InboxRecordBase,
    OutboxRecordBase,
    inbox_table,
    outbox_table,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class OrchestratorTable(SQLModel, registry=registry()):
    """Base of the orchestrator's tables, so create_all touches only them."""


class Checkout(OrchestratorTable, table=True):
    """One checkout: the request, its outcome, its idempotency record and who drives it."""

    __tablename__ = "checkout"
    __table_args__ = (
        Index("ix_checkout_created", "created_at", "id"),
        Index("ix_checkout_status_created", "status", "created_at", "id"),
        Index("ix_checkout_customer_created", "customer_id", "created_at", "id"),
        Index("ix_checkout_unfinished_lease", "status", "lease_expires_at", "next_attempt_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    status: str = Field(default=CheckoutStatus.pending, max_length=16)
    customer_id: str = Field(max_length=200)
    customer: str  # JSON of the customer as posted
    items: str  # JSON of the lines, prices as decimal strings
    currency: str = Field(max_length=3)
    # 64-bit: the largest order is 100 lines × 1000 × 1,000,000.00.
    total_cents: int = Field(sa_type=BigInteger)
    points: int = Field(sa_type=BigInteger)
    step_order: str = Field(max_length=64)
    error: str | None = None  # JSON: why the checkout failed
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

    # Inbound Idempotency-Key: the key is stored hashed; the first answer is kept for replays.
    idempotency_key_hash: str | None = Field(default=None, max_length=64, unique=True)
    request_fingerprint: str | None = Field(default=None, max_length=64)
    response_status: int | None = None
    response_body: str | None = None

    # Lease: the replica that drives the checkout, until when, and a fencing token that every
    # journal write must still match, so a replica that lost its lease cannot write late.
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_expires_at: float | None = None  # epoch seconds
    lease_token: int = 0

    # Scheduling: a checkout whose step keeps failing transiently is parked until next_attempt_at,
    # and fails (compensating) once deadline_at passes. Both epoch seconds.
    next_attempt_at: float | None = None
    deadline_at: float | None = None
    # The pivot: once the confirmation email step starts, the checkout can no longer be cancelled.
    past_pivot: bool = False
    cancel_requested: bool = False
    # Who drives it: this orchestrator's saga, or the services reacting to each other's events
    # (then ``last_event`` is the latest of them the journal saw, as JSON).
    coordination: str = Field(
        default="orchestration",
        max_length=16,
        sa_column_kwargs={"server_default": "orchestration"},
    )
    last_event: str | None = None


class Step(OrchestratorTable, table=True):
    """One step of a checkout, committed before and after every attempt."""

    __tablename__ = "step"
    # Its index also serves every lookup by checkout_id (a separate one was dropped in 0002).
    __table_args__ = (UniqueConstraint("checkout_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    checkout_id: uuid.UUID = Field(foreign_key="checkout.id")
    name: str = Field(max_length=16)
    position: int
    status: str = Field(default=StepStatus.pending, max_length=16)
    attempts: int = 0
    http_status: int | None = None
    result: str | None = None  # JSON summary of the service's answer (ids the compensation needs)
    error: str | None = None  # JSON of the last error
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    compensated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class EventOutbox(OutboxRecordBase, OrchestratorTable, table=True):
    """Events written with the effects they announce, until the relay has published them."""

    __tablename__ = outbox_table("orchestrator")


class EventInbox(InboxRecordBase, OrchestratorTable, table=True):
    """Ids of the messages applied here, so a redelivery is skipped."""

    __tablename__ = inbox_table("orchestrator")
