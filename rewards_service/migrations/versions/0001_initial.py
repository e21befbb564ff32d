"""initial: the rewards tables as ``create_all`` made them before migrations

Revision ID: 0001_initial
Revises: (none)
Create Date: 2026-11-22 02:04:58.204431
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
        "account",
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("balance >= 0", name="ck_account_balance_not_negative"),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_table(
        "idempotency_record",
        sa.Column("scope", sa.String(length=300), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response_body", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key"),
    )
    op.create_table(
        "point_transaction",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("checkout_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("reverses_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(kind = 'credit' AND points >= 0 AND reverses_id IS NULL) OR (kind = 'reversal' AND points <= 0 AND reverses_id IS NOT NULL)",
            name="ck_point_transaction_kind",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["account.customer_id"],
        ),
        sa.ForeignKeyConstraint(
            ["reverses_id"],
            ["point_transaction.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id", "checkout_id", "kind", name="uq_point_transaction_kind"),
        sa.UniqueConstraint("reverses_id"),
    )
    op.create_index(
        "ix_point_transaction_checkout_id", "point_transaction", ["checkout_id"], unique=False
    )
    op.create_index(
        "ix_point_transaction_customer_id", "point_transaction", ["customer_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_point_transaction_customer_id", table_name="point_transaction")
    op.drop_index("ix_point_transaction_checkout_id", table_name="point_transaction")
    op.drop_table("point_transaction")
    op.drop_table("idempotency_record")
    op.drop_table("account")
