"""Drop ix_step_checkout_id: the unique (checkout_id, name) index already serves lookups by checkout

Every read of a checkout's steps (``WHERE checkout_id = ?`` or ``IN (…)``) and every step update
(``WHERE checkout_id = ? AND name = ?``) uses the unique constraint's index, whose first column is
``checkout_id``; the second index only cost a write per step inserted.

Revision ID: 0002_step_checkout_index
Revises: 0001_initial
Create Date: 2026-11-22 02:05:40.693407
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_step_checkout_index"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_step_checkout_id", table_name="step")


def downgrade() -> None:
    op.create_index("ix_step_checkout_id", "step", ["checkout_id"], unique=False)
