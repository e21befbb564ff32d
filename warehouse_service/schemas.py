"""Request and response models of the warehouse API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from servicekit.text import NO_CONTROL_CHARACTERS

Sku = Field(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS, examples=["SKU-001"])


class ReservationLineIn(BaseModel):
    """A sku and how many units to hold."""

    model_config = ConfigDict(extra="forbid")

    sku: str = Sku
    quantity: int = Field(ge=1, le=1000, examples=[2])


class ReservationCreate(BaseModel):
    """Hold stock for a checkout: every line or none."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "checkout_id": "3f0c2a9e-8a1c-4c7a-9a55-2f1d5f2b7c11",
                    "items": [{"sku": "SKU-001", "quantity": 2}],
                }
            ]
        },
    )

    checkout_id: str = Field(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS)
    items: list[ReservationLineIn] = Field(min_length=1, max_length=100)


class HeldLine(BaseModel):
    """A sku and the units held for it (repeated request lines merged, so possibly over 1000)."""

    sku: str
    quantity: int


class ReservationPublic(BaseModel):
    """A reservation as the API shows it.

    ``voided``: the checkout was voided before it reserved anything; the row (with no items)
    bars it from reserving later.
    """

    id: uuid.UUID
    checkout_id: str
    status: Literal["reserved", "released", "voided"]
    items: list[HeldLine]
    created_at: datetime
    released_at: datetime | None


class ReservationPage(BaseModel):
    """Reservations matching a filter."""

    items: list[ReservationPublic]


class InventoryUpdate(BaseModel):
    """The new physical stock of a sku."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"on_hand": 100}]})

    on_hand: int = Field(ge=0, le=1_000_000_000)


class InventoryPublic(BaseModel):
    """Stock of a sku; ``available`` = ``on_hand`` − ``reserved``."""

    sku: str
    on_hand: int
    reserved: int
    available: int
