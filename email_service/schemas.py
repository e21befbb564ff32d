"""Request and response models of the email API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

TemplateName = Literal["order_confirmation", "order_cancelled"]
EmailStatus = Literal["pending", "sent", "logged", "failed"]
# Control characters would break headers and PostgreSQL refuses NUL in text.
CHECKOUT_ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"


class EmailCreate(BaseModel):
    """Send one templated email about a checkout (at most one per checkout and template)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "to": "ada@example.com",
                    "template": "order_confirmation",
                    "checkout_id": "3f0c2a9e-8a1c-4c7a-9a55-2f1d5f2b7c11",
                    "context": {
                        "customer_name": "Ada Lovelace",
                        "total": "39.98",
                        "currency": "USD",
                        "points": 39,
                        "items": [{"sku": "SKU-001", "quantity": 2, "unit_price": "19.99"}],
                    },
                }
            ]
        },
    )

    to: EmailStr
    template: TemplateName
    checkout_id: str = Field(min_length=1, max_length=64, pattern=CHECKOUT_ID_PATTERN)
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="Values the template shows (customer_name, items, total, currency, points, "
        "reason); missing ones get neutral defaults.",
    )


class EmailPublic(BaseModel):
    """A message of the outbox as lists show it."""

    id: uuid.UUID
    to: str
    template: TemplateName
    checkout_id: str
    subject: str
    status: EmailStatus
    attempts: int = Field(description="Delivery attempts so far.")
    last_error: str | None = Field(description="Why the last attempt failed, if it did.")
    created_at: datetime
    sent_at: datetime | None = Field(description="When it was sent or logged.")


class EmailDetail(EmailPublic):
    """A message with its rendered text body."""

    body: str


class EmailPage(BaseModel):
    """Messages matching a filter, newest first."""

    items: list[EmailPublic]
