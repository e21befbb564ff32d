"""The orchestrator schema's history (Alembic): ``env.py`` and ``versions/``, applied at start."""

from pathlib import Path

from orchestrator.models import OrchestratorTable
from servicekit.migrations import MigrationHistory

HISTORY = MigrationHistory(
    directory=Path(__file__).resolve().parent,
    version_table="alembic_version_orchestrator",
    metadata=OrchestratorTable.metadata,
)
