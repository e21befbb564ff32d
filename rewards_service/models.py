"""Tables of the rewards service's own database.

``account.balance`` always equals the sum of the account's ``point_transaction.points``: both are
written in one database transaction. Natural-key constraints make effects exactly-once even for
requests without an Idempotency-Key: one credit per (customer, checkout), one reversal per credit.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, UniqueConstraint
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


class RewardsTable(SQLModel, registry=registry()):
    """Base of the rewards tables, so create_all touches only them."""


class Account(RewardsTable, table=True):
    """Points of one customer; created by the first credit."""

    __tablename__ = "account"
    __table_args__ = (CheckConstraint("balance >= 0", name="ck_account_balance_not_negative"),)

    customer_id: str = Field(primary_key=True, max_length=200)
    # 64-bit: one checkout may earn up to 10^11 points (100 lines × 1000 × 1,000,000).
    balance: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PointTransaction(RewardsTable, table=True):
    """One ledger entry: a credit (points ≥ 0) or the reversal of a credit (points ≤ 0)."""

    __tablename__ = "point_transaction"
    __table_args__ = (
        # With one credit per (customer, checkout) and one reversal per credit, this is also
        # what makes a repeated credit or reversal a no-op under any concurrency.
        UniqueConstraint("customer_id", "checkout_id", "kind", name="uq_point_transaction_kind"),
        CheckConstraint(
            "(kind = 'credit' AND points >= 0 AND reverses_id IS NULL)"
            " OR (kind = 'reversal' AND points <= 0 AND reverses_id IS NOT NULL)",
            name="ck_point_transaction_kind",
        ),
        # An account's newest entries first (GET /accounts/{id}/transactions), without a sort.
        Index("ix_point_transaction_customer_created", "customer_id", "created_at", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    customer_id: str = Field(max_length=200, foreign_key="account.customer_id")
    checkout_id: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)
    points: int = Field(sa_type=BigInteger)
    reverses_id: uuid.UUID | None = Field(
        default=None, foreign_key="point_transaction.id", unique=True
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class VoidedCheckout(RewardsTable, table=True):
    """A checkout compensated at rewards: its credits reversed, and no credit accepted after.

    Without this row, a credit still on its way when the saga gave up on it (queued in a slow
    network, or sent by a replica that lost its lease) would land after the compensation.
    """

    __tablename__ = "voided_checkout"

    checkout_id: str = Field(primary_key=True, max_length=64)
    voided_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class IdempotencyRecord(IdempotencyRecordBase, RewardsTable, table=True):
    """First responses to keyed requests."""

    __tablename__ = "idempotency_record"


class EventOutbox(OutboxRecordBase, RewardsTable, table=True):
    """Events written with the effects they announce, until the relay has published them."""

    __tablename__ = outbox_table("rewards")


class EventInbox(InboxRecordBase, RewardsTable, table=True):
    """Ids of the messages applied here, so a redelivery is skipped."""

    __tablename__ = inbox_table("rewards")
