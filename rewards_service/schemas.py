"""Request and response models of the rewards API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from servicekit.text import NO_CONTROL_CHARACTERS


class TransactionCreate(BaseModel):
    """Credit a customer with the points earned by a checkout (at most once per checkout)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"checkout_id": "3f0c2a9e-8a1c-4c7a-9a55-2f1d5f2b7c11", "points": 39}]
        },
    )

    # Strict: a ledger takes no "39" or true for a number of points.
    checkout_id: str = Field(
        strict=True, min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS
    )
    points: int = Field(strict=True, ge=0, le=10**12, examples=[39])


class TransactionPublic(BaseModel):
    """A ledger entry as the API shows it; a reversal's ``points`` are negative."""

    id: uuid.UUID
    customer_id: str
    checkout_id: str
    kind: Literal["credit", "reversal"]
    points: int
    reverses_id: uuid.UUID | None = Field(description="The credit a reversal reverses.")
    created_at: datetime


class TransactionPage(BaseModel):
    """Ledger entries matching a filter, newest first."""

    items: list[TransactionPublic]


class CheckoutVoidPublic(BaseModel):
    """A voided checkout: the reversals of its credits (none if it had none); no credit after."""

    checkout_id: str
    voided_at: datetime
    reversals: list[TransactionPublic]


class AccountPublic(BaseModel):
    """A customer's points; always the sum of the account's ledger."""

    customer_id: str
    balance: int
