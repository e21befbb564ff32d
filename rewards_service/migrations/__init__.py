"""The rewards schema's history (Alembic): ``env.py`` and ``versions/``, applied at start."""

from pathlib import Path

from rewards_service.models import RewardsTable
from servicekit.migrations import MigrationHistory

HISTORY = MigrationHistory(
    directory=Path(__file__).resolve().parent,
    version_table="alembic_version_rewards",
    metadata=RewardsTable.metadata,
)
