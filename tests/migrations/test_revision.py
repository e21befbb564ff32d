"""``servicekit.migrations.revision``: a model change becomes a reviewed revision file."""

from __future__ import annotations

import shutil
from pathlib import Path

import sqlalchemy as sa
from sqlmodel.sql.sqltypes import AutoString

from servicekit.db.values import UTCDateTime
from servicekit.migrations import MigrationHistory, revision, upgrade
from tests.migrations.helpers import SERVICES, differences, version_of


def test_a_model_change_becomes_a_revision_that_imports_no_app_code(tmp_path: Path) -> None:
    """A new column and index are written as plain SQLAlchemy ops; applying them leaves no difference."""
    shipped = SERVICES["warehouse"].history
    directory = tmp_path / "migrations"
    shutil.copytree(shipped.directory, directory, ignore=shutil.ignore_patterns("__pycache__"))
    metadata = sa.MetaData()
    for table in shipped.metadata.sorted_tables:
        table.to_metadata(metadata)
    reservation = metadata.tables["reservation"]
    reservation.append_column(sa.Column("note", AutoString(length=40), nullable=True))
    reservation.append_column(sa.Column("expires_at", UTCDateTime(), nullable=True))
    sa.Index("ix_reservation_status", reservation.c.status)
    history = MigrationHistory(directory, shipped.version_table, metadata)
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    upgrade(url, shipped)

    revision(url, history, "reservation notes", rev_id="0004_notes")

    written = next((directory / "versions").glob("0004_notes*.py")).read_text()
    assert "down_revision: str | Sequence[str] | None = '0003_event_outbox_inbox'" in written
    assert "sa.String(length=40)" in written
    assert "sa.DateTime(timezone=True)" in written
    assert "ix_reservation_status" in written
    assert "servicekit" not in written
    assert "sqlmodel" not in written
    upgrade(url, history)
    assert version_of(url, history) == ["0004_notes"]
    assert differences(url, history) == []
