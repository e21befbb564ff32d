"""The email schema's history (Alembic): ``env.py`` and ``versions/``, applied at start."""

from pathlib import Path

from email_service.models import EmailTable
from servicekit.migrations import MigrationHistory

HISTORY = MigrationHistory(
    directory=Path(__file__).resolve().parent,
    version_table="alembic_version_email",
    metadata=EmailTable.metadata,
)
