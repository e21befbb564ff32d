"""Tables of the warehouse's own database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import Index
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from servicekit.db.values import UTCDateTime
from servicekit.events.tables import (
    InboxRecordBase,
    OutboxRecordBase,
    inbox_table,
    outbox_table,
)
from servicekit.idempotency import IdempotencyRecordBase


def utcnow() -> datetime:
    return datetime.now(UTC)


class WarehouseTable(SQLModel, registry=registry()):
    """Base of the warehouse's tables, so create_all touches only them."""


class InventoryItem(WarehouseTable, table=True):
    """Stock of one sku; ``reserved`` never exceeds ``on_hand``."""

    __tablename__ = "inventory_item"

    sku: str = Field(primary_key=True, max_length=64)
    on_hand: int = Field(ge=0)
    reserved: int = Field(default=0, ge=0)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Reservation(WarehouseTable, table=True):
    """Stock held for one checkout; at most one per checkout.

    ``status``: ``reserved``, ``released`` (stock given back) or ``voided`` (the checkout was
    compensated before it reserved: a row without lines that refuses any later reservation).
    """

    __tablename__ = "reservation"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    checkout_id: str = Field(max_length=64, unique=True)
    status: str = Field(default="reserved", max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    released_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ReservationLine(WarehouseTable, table=True):
    """One sku and quantity of a reservation."""

    __tablename__ = "reservation_line"
    # A reservation's lines in sku order (how they are read), and one line per sku.
    __table_args__ = (
        Index("ix_reservation_line_reservation_sku", "reservation_id", "sku", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    reservation_id: uuid.UUID = Field(foreign_key="reservation.id")
    sku: str = Field(max_length=64)
    quantity: int


class IdempotencyRecord(IdempotencyRecordBase, WarehouseTable, table=True):
    """First responses to keyed requests."""

    __tablename__ = "idempotency_record"


class EventOutbox(OutboxRecordBase, WarehouseTable, table=True):
    """Events written with the effects they announce, until the relay has published them."""

    __tablename__ = outbox_table("warehouse")


class EventInbox(InboxRecordBase, WarehouseTable, table=True):
    """Ids of the messages applied here, so a redelivery is skipped."""

    __tablename__ = inbox_table("warehouse")
