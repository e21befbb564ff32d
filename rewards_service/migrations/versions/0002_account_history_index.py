"""An account's ledger newest first, by (customer_id, created_at, id)

``GET /accounts/{id}/transactions?limit=`` reads ``WHERE customer_id = ? ORDER BY created_at DESC,
id DESC LIMIT n``: with this index that is a short index scan, not a sort of the customer's whole
history. It replaces the index on ``customer_id`` alone, whose lookups it serves too.

Revision ID: 0002_account_history_index
Revises: 0001_initial
Create Date: 2026-11-22 02:05:44.531306
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_account_history_index"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_point_transaction_customer_created",
        "point_transaction",
        ["customer_id", "created_at", "id"],
        unique=False,
    )
    op.drop_index("ix_point_transaction_customer_id", table_name="point_transaction")


def downgrade() -> None:
    op.create_index(
        "ix_point_transaction_customer_id", "point_transaction", ["customer_id"], unique=False
    )
    op.drop_index("ix_point_transaction_customer_created", table_name="point_transaction")
