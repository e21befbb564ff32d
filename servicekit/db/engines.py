"""SQLAlchemy engines on the suite's databases: for migrations (Alembic) and ORM reads in tests.

The services and the journal run their transactions on ``servicekit.db.database.Database``;
these engines set up their connections the same way (``servicekit.db.sqlite``), so what either
writes the other reads, and the two can share one SQLite file.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from servicekit.db import sqlite
from servicekit.db.urls import is_sqlite, normalize_url, prepare_sqlite_folder


def _tune_sqlite(engine: Engine) -> None:
    """The kit's connection set-up, and write transactions that take the lock up front."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        sqlite.configure(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_sync_engine(url: str, **kwargs: Any) -> Engine:
    """A synchronous engine for ``url`` (migrations, and tests that read through the ORM)."""
    url = normalize_url(url, asynchronous=False)
    if is_sqlite(url):
        prepare_sqlite_folder(url)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": sqlite.BUSY_TIMEOUT_S},
            **kwargs,
        )
        _tune_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def create_async_db_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An asyncio engine for ``url`` (tests and tools that read through the ORM)."""
    url = normalize_url(url, asynchronous=True)
    if is_sqlite(url):
        prepare_sqlite_folder(url)
        engine = create_async_engine(url, connect_args={"timeout": sqlite.BUSY_TIMEOUT_S}, **kwargs)
        _tune_sqlite(engine.sync_engine)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)
