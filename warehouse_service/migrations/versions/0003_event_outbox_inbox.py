"""The event outbox and inbox, for COORDINATION=choreography

``warehouse_event_outbox`` holds the events this service's transactions wrote with their
effects, until the relay has published them; ``warehouse_event_inbox`` the ids of the messages it
applied, so a redelivery is skipped (``servicekit.events``).

Revision ID: 0003_event_outbox_inbox
Revises: 0002_reservation_line_sku
Create Date: 2026-12-06 22:31:37.995929
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_event_outbox_inbox"
down_revision: str | Sequence[str] | None = "0002_reservation_line_sku"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "warehouse_event_inbox",
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id"),
    )
    op.create_table(
        "warehouse_event_outbox",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("routing_key", sa.String(length=100), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("message_id"),
    )


def downgrade() -> None:
    op.drop_table("warehouse_event_outbox")
    op.drop_table("warehouse_event_inbox")
