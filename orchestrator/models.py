"""Tables of the orchestrator's own database: checkouts and their step journal."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic_core import PydanticUndefined
from sqlalchemy import BigInteger, Index, UniqueConstraint
from sqlalchemy.orm import configure_mappers, registry
from sqlmodel import Field, SQLModel

from servicekit.db import UTCDateTime


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
    status: str = Field(default="pending", max_length=16)
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


class Step(OrchestratorTable, table=True):
    """One step of a checkout, committed before and after every attempt."""

    __tablename__ = "step"
    # Its index also serves every lookup by checkout_id (a separate one was dropped in 0002).
    __table_args__ = (UniqueConstraint("checkout_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    checkout_id: uuid.UUID = Field(foreign_key="checkout.id")
    name: str = Field(max_length=16)
    position: int
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    http_status: int | None = None
    result: str | None = None  # JSON summary of the service's answer (ids the compensation needs)
    error: str | None = None  # JSON of the last error
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    compensated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


def new_row(model: type[Row], **values: Any) -> Row:
    """A new row of ``model``: ``values`` over the model's defaults, without validating them.

    ``Checkout(**values)`` validates every field through SQLModel, ~0.2-0.3 ms of CPU per row on
    the hot path, for values the API has just validated and computed. This builds the row the
    way the ORM's loader builds the rows it reads (``new_instance``, then its ``__dict__``).
    """
    defaults = _defaults_of(model)
    unknown = values.keys() - defaults.keys()
    if unknown:
        raise TypeError(f"{model.__name__} has no field {', '.join(sorted(unknown))}")
    _configure_mappers_once()  # a new_instance of an unconfigured mapper fails
    row: Row = model._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    fields = row.__dict__
    for name, (default, factory) in defaults.items():
        if name in values:
            fields[name] = values[name]
        elif factory is not None:
            fields[name] = factory()
        elif default is PydanticUndefined:
            raise TypeError(f"{model.__name__} needs {name}")
        else:
            fields[name] = default
    return row


Row = TypeVar("Row", Checkout, Step)
_configure_mappers_once = functools.cache(configure_mappers)


@functools.cache
def _defaults_of(model: type[SQLModel]) -> dict[str, tuple[Any, Callable[[], Any] | None]]:
    """name -> (default, default factory), in the model's field order."""
    return {
        name: (field.default, field.default_factory)  # type: ignore[misc]
        for name, field in model.model_fields.items()
    }
