"""What the migration tests share: each service's history and app, schema snapshots, plain SQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi import FastAPI

from email_service.main import create_app as create_email_app
from email_service.migrations import HISTORY as EMAIL_HISTORY
from email_service.settings import Settings as EmailSettings
from orchestrator.main import create_app as create_orchestrator_app
from orchestrator.migrations import HISTORY as ORCHESTRATOR_HISTORY
from orchestrator.settings import Settings as OrchestratorSettings
from rewards_service.main import create_app as create_rewards_app
from rewards_service.migrations import HISTORY as REWARDS_HISTORY
from rewards_service.settings import Settings as RewardsSettings
from servicekit.db.engines import create_sync_engine
from servicekit.migrations import MigrationHistory
from warehouse_service.main import create_app as create_warehouse_app
from warehouse_service.migrations import HISTORY as WAREHOUSE_HISTORY
from warehouse_service.settings import Settings as WarehouseSettings

INITIAL = "0001_initial"


@dataclass(frozen=True)
class ServiceUnderTest:
    """A service as the migration tests see it."""

    name: str
    history: MigrationHistory
    make_app: Callable[[str], FastAPI]
    head: str


SERVICES = {
    "orchestrator": ServiceUnderTest(
        "orchestrator",
        ORCHESTRATOR_HISTORY,
        lambda url: create_orchestrator_app(OrchestratorSettings(database_url=url)),
        "0003_choreography",
    ),
    "warehouse": ServiceUnderTest(
        "warehouse",
        WAREHOUSE_HISTORY,
        lambda url: create_warehouse_app(WarehouseSettings(database_url=url)),
        "0003_event_outbox_inbox",
    ),
    "rewards": ServiceUnderTest(
        "rewards",
        REWARDS_HISTORY,
        lambda url: create_rewards_app(RewardsSettings(database_url=url)),
        "0004_event_outbox_inbox",
    ),
    "email": ServiceUnderTest(
        "email",
        EMAIL_HISTORY,
        lambda url: create_email_app(EmailSettings(database_url=url)),
        "0003_event_outbox_inbox",
    ),
}


def differences(url: str, history: MigrationHistory) -> list[Any]:
    """What ``alembic check`` would report: the database's schema against the models."""
    engine = create_sync_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": history.version_table, "compare_type": True}
            )
            return list(compare_metadata(context, history.metadata))
    finally:
        engine.dispose()


def snapshot(url: str) -> dict[str, Any]:
    """Every table of the database (but version tables) as reflected: columns, keys, indexes, checks."""
    engine = create_sync_engine(url)
    try:
        inspector = sa.inspect(engine)
        tables: dict[str, Any] = {}
        for table in sorted(inspector.get_table_names()):
            if table.startswith("alembic_version"):
                continue
            tables[table] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                    for c in inspector.get_columns(table)
                ],
                "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
                "foreign_keys": sorted(
                    (
                        tuple(fk["constrained_columns"]),
                        fk["referred_table"],
                        tuple(fk["referred_columns"]),
                    )
                    for fk in inspector.get_foreign_keys(table)
                ),
                "indexes": sorted(
                    (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                    for ix in inspector.get_indexes(table)
                ),
                "unique_constraints": sorted(
                    tuple(uc["column_names"]) for uc in inspector.get_unique_constraints(table)
                ),
                "check_constraints": sorted(
                    (ck["name"], ck["sqltext"]) for ck in inspector.get_check_constraints(table)
                ),
            }
        return tables
    finally:
        engine.dispose()


def version_of(url: str, history: MigrationHistory) -> list[str]:
    """The revisions recorded in the service's version table."""
    engine = create_sync_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text(f"SELECT version_num FROM {history.version_table}"))
            return [row[0] for row in rows]
    finally:
        engine.dispose()


def insert(connection: sa.Connection, table: str, **values: Any) -> None:
    """``INSERT INTO table (…) VALUES (…)`` in plain SQL; uuids and datetimes bound per dialect."""
    columns = ", ".join(f'"{name}"' for name in values)
    placeholders = ", ".join(f":{name}" for name in values)
    statement = sa.text(f'INSERT INTO "{table}" ({columns}) VALUES ({placeholders})')
    for name, value in values.items():
        if isinstance(value, uuid.UUID):
            statement = statement.bindparams(sa.bindparam(name, type_=sa.Uuid()))
        elif isinstance(value, datetime):
            statement = statement.bindparams(sa.bindparam(name, type_=sa.DateTime(timezone=True)))
    connection.execute(statement, values)


def count(url: str, table: str) -> int:
    """Rows in ``table``."""
    engine = create_sync_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one())
    finally:
        engine.dispose()
