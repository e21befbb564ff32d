"""The journal's own database access: plain SQL, without the ORM session, for the hot path.

Profiling put 58-63 % of the orchestrator's CPU in the journal's ORM sessions on aiosqlite /
psycopg (11 transactions and ~124 thread hand-offs per checkout). ``orchestrator.store.Journal``
now runs its transactions here: on SQLite in one thread with one connection, on PostgreSQL
through a pool of psycopg connections, each transaction one hop or one round trip. The schema
(models, Alembic) and the read side (``views``, ``ui``: lists, counts) stay on SQLAlchemy.

There is one journal database per engine, shared by every ``Journal`` on it, opened on first use
and closed by ``Journal.close()`` or when the engine is disposed (after which the next use opens
a new one, as an engine's pool does).
"""

from __future__ import annotations

import weakref

from sqlalchemy import Engine, event
from sqlalchemy.exc import MissingGreenlet
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_only

from orchestrator.journaldb.base import JournalDB
from orchestrator.journaldb.postgres import PostgresJournalDB
from orchestrator.journaldb.sqlite import SqliteJournalDB

__all__ = ["JournalDB", "journal_db"]

_databases: weakref.WeakKeyDictionary[Engine, JournalDB] = weakref.WeakKeyDictionary()


def journal_db(engine: AsyncEngine) -> JournalDB:
    """The journal database of ``engine``'s database (opened on its first transaction)."""
    sync_engine = engine.sync_engine
    database = _databases.get(sync_engine)
    if database is None or database.closed:
        url = engine.url.render_as_string(hide_password=False)
        if engine.dialect.name == "sqlite":
            database = SqliteJournalDB(url)
        else:
            database = PostgresJournalDB(url)
        _databases[sync_engine] = database
        if not event.contains(sync_engine, "engine_disposed", _on_dispose):
            event.listen(sync_engine, "engine_disposed", _on_dispose)
        # An engine dropped without being disposed: its SQLite thread ends with it.
        weakref.finalize(sync_engine, database.close_soon)
    return database


def _on_dispose(engine: Engine) -> None:
    """Close the engine's journal database with it (``AsyncEngine.dispose`` runs in a greenlet,
    where the close can be awaited; from synchronous code it is only started)."""
    database = _databases.pop(engine, None)
    if database is None or database.closed:
        return
    try:
        await_only(database.close())
    except MissingGreenlet:
        database.close_soon()
