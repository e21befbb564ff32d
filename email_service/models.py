"""Tables of the email service's own database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import Index, Text, UniqueConstraint
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

SUBJECT_MAX = 255
ERROR_MAX = 500


def utcnow() -> datetime:
    return datetime.now(UTC)


class EmailTable(SQLModel, registry=registry()):
    """Base of the email service's tables, so create_all touches only them."""


class OutboxMessage(EmailTable, table=True):
    """One email, recorded before it is delivered; at most one per (checkout, template).

    ``status``: ``pending`` (recorded, not yet delivered) → ``sent`` (SMTP accepted it) or
    ``logged`` (no SMTP_URL: written to the log) or ``failed`` (last attempt refused; retried
    by the next request). ``locked_until`` is a delivery lease, so two concurrent requests
    never deliver the same message twice, and a crashed attempt frees it when the lease ends.
    """

    __tablename__ = "email_message"
    __table_args__ = (
        UniqueConstraint("checkout_id", "template", name="uq_email_message_checkout_template"),
        # Messages to an address newest first, ties broken by id as GET /emails?to= orders them.
        Index("ix_email_message_to_created", "to", "created_at", "id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    to: str = Field(max_length=320)
    template: str = Field(max_length=32)
    checkout_id: str = Field(max_length=64)
    subject: str = Field(max_length=SUBJECT_MAX)
    body: str = Field(sa_type=Text)
    status: str = Field(default="pending", max_length=16)
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, max_length=ERROR_MAX)
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class IdempotencyRecord(IdempotencyRecordBase, EmailTable, table=True):
    """First responses to keyed requests."""

    __tablename__ = "idempotency_record"


class EventOutbox(OutboxRecordBase, EmailTable, table=True):
    """Events written with the effects they announce, until the relay has published them."""

    __tablename__ = outbox_table("email")


class EventInbox(InboxRecordBase, EmailTable, table=True):
    """Ids of the messages applied here, so a redelivery is skipped."""

    __tablename__ = inbox_table("email")
