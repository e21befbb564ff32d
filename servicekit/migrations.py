"""Alembic, driven from code: each service ships its migration history inside its package.

A service declares a ``MigrationHistory`` (its ``migrations/`` directory, holding ``env.py`` and
``versions/``, its own version table, its table metadata) and calls ``upgrade`` at start; there is
no ``alembic.ini``: the Alembic ``Config`` is built here. Each history has a version table of its
own (``alembic_version_<service>``), so two histories never read each other's revision.

An upgrade is one transaction, serialised between processes: on PostgreSQL under a transaction
advisory lock keyed on the version table (two replicas starting at once: the second waits, then
finds the schema at head and does nothing); on SQLite by the write lock ``BEGIN IMMEDIATE`` takes.
A database whose tables were made by ``create_all`` before the service had migrations is adopted:
it is stamped at the first revision, which creates exactly those tables, then upgraded (this
assumes the database is the service's own, as each service's is).

A new revision: ``revision(database_url, HISTORY, "what it does")`` against a database at head
writes ``versions/<id>_<slug>.py`` from the difference between it and the models; review it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, String, TypeDecorator, inspect, text
from sqlmodel.sql.sqltypes import AutoString

from servicekit.db.engines import create_sync_engine

log = logging.getLogger(__name__)

# Alembic's ``context`` and ``op`` are module-level proxies: one migration at a time per process.
_PROCESS_LOCK = threading.Lock()


@dataclass(frozen=True)
class MigrationHistory:
    """Where a service's migrations live, the table recording its revision, and its models."""

    directory: Path
    version_table: str
    metadata: MetaData

    @property
    def lock_key(self) -> int:
        """A PostgreSQL advisory lock key (signed 64-bit) of this history's own."""
        digest = hashlib.sha256(self.version_table.encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)


def config(history: MigrationHistory, connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` for ``history``; ``env.py`` runs on ``connection``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(history.directory))
    cfg.attributes["history"] = history
    cfg.attributes["connection"] = connection
    return cfg


def _render_item(type_: str, obj: Any, _autogen_context: AutogenContext) -> str | Literal[False]:
    """Render the kit's column types as plain SQLAlchemy ones, so revisions import no app code."""
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl_instance!r}"
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.{String(length=obj.length)!r}"
    return False


def run_env() -> None:
    """The body of every service's ``env.py``: run the migrations on the connection given."""
    from alembic import context

    history: MigrationHistory = context.config.attributes["history"]
    connection: Connection | None = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            f"{history.directory}: run migrations through servicekit.migrations, not the alembic CLI"
        )
    context.configure(
        connection=connection,
        target_metadata=history.metadata,
        version_table=history.version_table,
        # SQLite alters a table by copying it; autogenerate writes such changes as batches.
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=_render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


@contextmanager
def _locked(engine: Engine, history: MigrationHistory) -> Iterator[Connection]:
    """A connection in a transaction no other process migrating ``history`` can run beside."""
    with _PROCESS_LOCK, engine.connect() as connection, connection.begin():
        # On SQLite the kit's engines BEGIN IMMEDIATE: this transaction already holds the write lock.
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": history.lock_key}
            )
        yield connection


def _adopt(connection: Connection, cfg: Config, history: MigrationHistory) -> None:
    """Stamp a database made by ``create_all`` before migrations existed at the first revision."""
    tables = set(inspect(connection).get_table_names())
    if history.version_table in tables or not tables & set(history.metadata.tables):
        return
    base = ScriptDirectory.from_config(cfg).get_base()
    if base is None:
        raise RuntimeError(f"{history.directory} has no single first revision")
    log.warning(
        "%s: tables exist without %s; recording them as revision %s",
        history.directory,
        history.version_table,
        base,
    )
    command.stamp(cfg, base)


def upgrade(
    database: str | Engine, history: MigrationHistory, revision: str = "head"
) -> str | None:
    """Bring the database (a URL, or an engine of the kit) to ``revision``; a no-op when there.

    Returns the revision it found under the lock (None: an empty database). A URL gets a
    short-lived synchronous engine, disposed before returning.
    """
    engine = create_sync_engine(database) if isinstance(database, str) else database
    try:
        with _locked(engine, history) as connection:
            cfg = config(history, connection)
            _adopt(connection, cfg, history)
            found = MigrationContext.configure(
                connection, opts={"version_table": history.version_table}
            ).get_current_revision()
            command.upgrade(cfg, revision)
            return found
    finally:
        if isinstance(database, str):
            engine.dispose()


def current(database: str | Engine, history: MigrationHistory) -> str | None:
    """The revision the database is at (None before the first upgrade)."""
    engine = create_sync_engine(database) if isinstance(database, str) else database
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": history.version_table}
            )
            return context.get_current_revision()
    finally:
        if isinstance(database, str):
            engine.dispose()


def revision(
    database_url: str, history: MigrationHistory, message: str, *, rev_id: str | None = None
) -> None:
    """Write a new revision from the difference between the database (at head) and the models."""
    engine = create_sync_engine(database_url)
    try:
        with _locked(engine, history) as connection:
            command.revision(
                config(history, connection), message=message, autogenerate=True, rev_id=rev_id
            )
    finally:
        engine.dispose()
