"""Choreographed checkouts: the checkout's coordination and last event; the event outbox and inbox

``checkout.coordination`` says who drives a checkout (existing rows: ``orchestration``);
``checkout.last_event`` is the latest event the journal saw of a choreographed one. The outbox
holds ``checkout.placed`` events until the relay has published them; the inbox, the ids of the
messages the journal applied (``servicekit.events``).

Revision ID: 0003_choreography
Revises: 0002_step_checkout_index
Create Date: 2026-12-06 22:31:37.594291
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_choreography"
down_revision: str | Sequence[str] | None = "0002_step_checkout_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orchestrator_event_inbox",
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id"),
    )
    op.create_table(
        "orchestrator_event_outbox",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("routing_key", sa.String(length=100), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("message_id"),
    )
    with op.batch_alter_table("checkout", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "coordination", sa.String(length=16), nullable=False, server_default="orchestration"
            )
        )
        batch_op.add_column(sa.Column("last_event", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checkout", schema=None) as batch_op:
        batch_op.drop_column("last_event")
        batch_op.drop_column("coordination")

    op.drop_table("orchestrator_event_outbox")
    op.drop_table("orchestrator_event_inbox")
