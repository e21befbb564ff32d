"""The warehouse schema's history (Alembic): ``env.py`` and ``versions/``, applied at start."""

from pathlib import Path

from servicekit.migrations import MigrationHistory
from warehouse_service.models import WarehouseTable

HISTORY = MigrationHistory(
    directory=Path(__file__).resolve().parent,
    version_table="alembic_version_warehouse",
    metadata=WarehouseTable.metadata,
)
