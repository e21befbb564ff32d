"""Reservation lines by (reservation_id, sku), unique: one line per sku, read in sku order

``_lines`` reads ``WHERE reservation_id = ? ORDER BY sku``: the index returns them in that order
without a sort, and it enforces what ``merge_lines`` already does (one line per sku). It replaces
the index on ``reservation_id`` alone, whose lookups it serves too.

Revision ID: 0002_reservation_line_sku
Revises: 0001_initial
Create Date: 2026-11-22 02:05:42.704407
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_reservation_line_sku"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_reservation_line_reservation_sku",
        "reservation_line",
        ["reservation_id", "sku"],
        unique=True,
    )
    op.drop_index("ix_reservation_line_reservation_id", table_name="reservation_line")


def downgrade() -> None:
    op.create_index(
        "ix_reservation_line_reservation_id", "reservation_line", ["reservation_id"], unique=False
    )
    op.drop_index("ix_reservation_line_reservation_sku", table_name="reservation_line")
