"""Voided checkouts: a compensated checkout refuses credits that arrive afterwards

``POST /checkouts/{checkout_id}/void`` reverses the checkout's credits and inserts this row; a
credit for a voided checkout is refused with 409, so a credit request still on its way when the
saga compensated (a slow network, a replica that lost its lease) cannot land afterwards.

Revision ID: 0003_voided_checkout
Revises: 0002_account_history_index
Create Date: 2026-11-22 04:27:07.141039
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_voided_checkout"
down_revision: str | Sequence[str] | None = "0002_account_history_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "voided_checkout",
        sa.Column("checkout_id", sa.String(length=64), nullable=False),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("checkout_id"),
    )


def downgrade() -> None:
    op.drop_table("voided_checkout")
