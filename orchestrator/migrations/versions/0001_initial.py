"""initial: the orchestrator tables as ``create_all`` made them before migrations

Revision ID: 0001_initial
Revises: (none)
Create Date: 2026-11-22 02:04:54.911199
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "checkout",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("customer", sa.String(), nullable=False),
        sa.Column("items", sa.String(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("step_order", sa.String(length=64), nullable=False),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("idempotency_key_hash", sa.String(length=64), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.String(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("lease_token", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=True),
        sa.Column("deadline_at", sa.Float(), nullable=True),
        sa.Column("past_pivot", sa.Boolean(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key_hash"),
    )
    op.create_index("ix_checkout_created", "checkout", ["created_at", "id"], unique=False)
    op.create_index(
        "ix_checkout_customer_created",
        "checkout",
        ["customer_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_checkout_status_created", "checkout", ["status", "created_at", "id"], unique=False
    )
    op.create_index(
        "ix_checkout_unfinished_lease",
        "checkout",
        ["status", "lease_expires_at", "next_attempt_at"],
        unique=False,
    )
    op.create_table(
        "step",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("checkout_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("result", sa.String(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("compensated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["checkout_id"],
            ["checkout.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("checkout_id", "name"),
    )
    op.create_index("ix_step_checkout_id", "step", ["checkout_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_step_checkout_id", table_name="step")
    op.drop_table("step")
    op.drop_index("ix_checkout_unfinished_lease", table_name="checkout")
    op.drop_index("ix_checkout_status_created", table_name="checkout")
    op.drop_index("ix_checkout_customer_created", table_name="checkout")
    op.drop_index("ix_checkout_created", table_name="checkout")
    op.drop_table("checkout")
