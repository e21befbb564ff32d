"""Messages to an address newest first, by (to, created_at, id)

``GET /emails?to=`` reads ``WHERE to = ? ORDER BY created_at DESC, id DESC LIMIT n``; with ``id``
in the index the whole order comes from it (no sort step for ties). It replaces the index on
(to, created_at).

Revision ID: 0002_to_created_id_index
Revises: 0001_initial
Create Date: 2026-11-22 02:05:46.341459
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_to_created_id_index"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_email_message_to_created", "email_message", ["to", "created_at", "id"], unique=False
    )
    op.drop_index("ix_email_message_to_created_at", table_name="email_message")


def downgrade() -> None:
    op.create_index(
        "ix_email_message_to_created_at", "email_message", ["to", "created_at"], unique=False
    )
    op.drop_index("ix_email_message_to_created", table_name="email_message")
