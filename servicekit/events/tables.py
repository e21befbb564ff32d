"""The outbox's and inbox's columns; a service declares both tables on its own base.

    class EventOutbox(OutboxRecordBase, WarehouseTable, table=True):
        __tablename__ = outbox_table("warehouse")

so its migrations create them with its other tables. The names carry the service's
(``EventStore("warehouse")`` writes to ``warehouse_event_outbox``): services sharing a database
keep their own.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Integer
from sqlmodel import Field, SQLModel

from servicekit.db.values import UTCDateTime


def outbox_table(service: str) -> str:
    return f"{service}_event_outbox"


def inbox_table(service: str) -> str:
    return f"{service}_event_inbox"


def _now() -> datetime:
    return datetime.now(UTC)


class OutboxRecordBase(SQLModel):
    """An event written with the effect it announces, waiting for the relay to publish it."""

    # Publishing order; an INTEGER PRIMARY KEY on SQLite is the rowid, so it counts up.
    seq: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger().with_variant(Integer(), "sqlite")
    )
    message_id: str = Field(max_length=64, unique=True)
    routing_key: str = Field(max_length=100)
    body: str
    created_at: datetime = Field(default_factory=_now, sa_type=UTCDateTime)
    # A relay that took the row publishes it until then; past it, another relay may.
    claimed_until: float | None = None


class InboxRecordBase(SQLModel):
    """A message this service applied: a redelivery of it is acknowledged and skipped."""

    message_id: str = Field(primary_key=True, max_length=64)
    event_type: str = Field(max_length=100)
    received_at: datetime = Field(default_factory=_now, sa_type=UTCDateTime)
