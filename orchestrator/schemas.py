"""Request and response models of the orchestrator API."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)

from orchestrator.saga.plan import StepKind
from orchestrator.statuses import CheckoutStatus, StepStatus
from servicekit.events.runtime import Coordination
from servicekit.text import NO_CONTROL_CHARACTERS

# Money travels as an exact decimal string, never a float.
_AS_STRING = PlainSerializer(lambda d: f"{d:.2f}", return_type=str, when_used="json")
# pydantic documents the string form as any string; say which strings: 0–1000000, 2 places.
MONEY_PATTERN = r"^(?:\d{1,6}(?:\.\d{1,2})?|1000000(?:\.00?)?)$"
Money = Annotated[
    Decimal,
    Field(ge=0, le=1_000_000, decimal_places=2, allow_inf_nan=False),
    _AS_STRING,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 1_000_000},
                {"type": "string", "pattern": MONEY_PATTERN},
            ],
            "examples": ["19.99"],
        }
    ),
]
Total = Annotated[Decimal, Field(ge=0, decimal_places=2, examples=["39.98"]), _AS_STRING]

CHECKOUT_EXAMPLE: dict[str, Any] = {
    "customer": {
        "id": "c-42",
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "rewards_member": True,
    },
    "items": [{"sku": "SKU-001", "quantity": 2, "unit_price": "19.99"}],
    "currency": "USD",
}


class Customer(BaseModel):
    """Who is buying."""

    model_config = ConfigDict(extra="forbid")

    # The id travels in the rewards service's URL path (/accounts/{id}/…): no "/" and not "." or "..",
    # which a URL cannot carry as one path segment.
    id: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[^/\x00-\x1f\x7f]+$",
        examples=["c-42"],
        description="1–200 characters, no control characters, no '/', not '.' or '..'.",
    )

    @field_validator("id")
    @classmethod
    def _one_path_segment(cls, value: str) -> str:
        if value in (".", ".."):
            raise ValueError("a customer id cannot be '.' or '..'")
        return value

    email: EmailStr = Field(examples=["ada@example.com"])
    name: str = Field(
        min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS, examples=["Ada Lovelace"]
    )
    rewards_member: bool = Field(default=False, description="Members earn floor(total) points.")


class LineItem(BaseModel):
    """One line of the order."""

    model_config = ConfigDict(extra="forbid")

    sku: str = Field(
        min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS, examples=["SKU-001"]
    )
    quantity: int = Field(ge=1, le=1000, examples=[2])
    unit_price: Money = Field(description="A decimal string (or number), at most 2 decimal places.")


class CheckoutCreate(BaseModel):
    """A placed order to check out."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [CHECKOUT_EXAMPLE]})

    customer: Customer
    items: list[LineItem] = Field(min_length=1, max_length=100)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", examples=["USD"])


class StepPublic(BaseModel):
    """One step of the saga as recorded in the journal."""

    name: Literal["warehouse", "rewards", "email"]
    status: StepStatus
    kind: StepKind = Field(
        description="What its place in CHECKOUT_STEPS makes it: compensatable (undone if the "
        "checkout fails), pivot (the go/no-go step) or retriable (after the pivot: retried "
        "until it succeeds, never undone)."
    )
    group: int = Field(
        description="The group it runs in, from 0; the steps of one group run at the same time."
    )
    attempts: int = Field(description="Calls made for this step so far, retries included.")
    started_at: datetime | None
    finished_at: datetime | None
    http_status: int | None = Field(description="HTTP status of the last answer from the service.")
    result: dict[str, Any] | None = Field(description="What the service answered (ids, status).")
    error: dict[str, Any] | None = Field(description="The last error, if any.")
    compensated_at: datetime | None


class Waiting(BaseModel):
    """Why an unfinished checkout is not finished yet."""

    reason: str = Field(
        description="In words: in progress, retrying, parked, waiting for a replica, cancelling."
    )
    step: Literal["warehouse", "rewards", "email"] | None = Field(description="The step it is at.")
    attempts: int = Field(description="Attempts of that step so far.")
    last_error: dict[str, Any] | None = Field(description="The step's last error, if any.")
    next_attempt_at: datetime | None = Field(description="When a parked checkout resumes.")
    deadline_at: datetime | None = Field(
        description="After this, transient failures fail the checkout."
    )
    lease_owner: str | None = Field(description="The replica driving it, if any.")
    lease_expires_at: datetime | None = Field(description="When that replica's lease runs out.")
    cancel_requested: bool
    cancellable: bool = Field(description="Whether POST /checkouts/{id}/cancel is still allowed.")
    stuck: bool = Field(
        default=False,
        description="A choreographed checkout with no terminal event by its deadline.",
    )
    last_event: dict[str, Any] | None = Field(
        default=None,
        description="A choreographed checkout's latest event: type, step, source, message_id, "
        "occurred_at.",
    )


class CustomerRecorded(BaseModel):
    """The customer as the checkout recorded it (validated as ``Customer`` when it was placed).

    Not validated again on every read: checking the email address alone costs more CPU than the
    rest of the answer.
    """

    id: str = Field(examples=["c-42"])
    email: str = Field(examples=["ada@example.com"], json_schema_extra={"format": "email"})
    name: str = Field(examples=["Ada Lovelace"])
    rewards_member: bool = False


class CheckoutPublic(BaseModel):
    """A checkout and every step of its saga."""

    id: uuid.UUID
    status: CheckoutStatus
    customer: CustomerRecorded
    items: list[LineItem]
    currency: str
    total: Total
    points: int = Field(description="Points credited: floor(total) for rewards members, else 0.")
    steps: list[StepPublic]
    error: dict[str, Any] | None = Field(description="Why the checkout failed, when it did.")
    waiting: Waiting | None = Field(
        default=None,
        description="For an unfinished checkout: what it is waiting for (null once terminal).",
    )
    coordination: Coordination = Field(
        default="orchestration",
        description="Who drives it: this orchestrator's saga (orchestration), or the services "
        "reacting to each other's events (choreography).",
    )
    created_at: datetime
    updated_at: datetime


class CheckoutPage(BaseModel):
    """A page of checkouts, newest first; pass ``next_cursor`` back as ``cursor`` for the next."""

    items: list[CheckoutPublic]
    next_cursor: str | None
