"""Database URLs and engines for SQLite (the embedded default) and PostgreSQL (scale-out).

``DATABASE_URL`` may name a driver or not (``sqlite:///x.db``, ``sqlite+aiosqlite:///x.db``,
``postgresql://u@h/db``, ``postgresql+asyncpg://…``); the kit picks the driver each engine needs:
pysqlite or aiosqlite for SQLite, psycopg 3 (sync and async) for PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import Depends, Request
from sqlalchemy import (
    DateTime,
    Dialect,
    Engine,
    TypeDecorator,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import Session

if TYPE_CHECKING:
    from servicekit.migrations import MigrationHistory

SQLITE_BUSY_TIMEOUT_S = 30


class UnsupportedDatabaseError(ValueError):
    """A DATABASE_URL naming a database the suite does not support."""


def normalize_url(url: str, *, asynchronous: bool) -> str:
    """Return ``url`` with the driver this suite uses for its backend."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        driver = "aiosqlite" if asynchronous else "pysqlite"
    elif backend in {"postgresql", "postgres"}:
        backend, driver = "postgresql", "psycopg"
    else:
        raise UnsupportedDatabaseError(
            f"unsupported DATABASE_URL backend {backend!r}: use sqlite or postgresql"
        )
    return parsed.set(drivername=f"{backend}+{driver}").render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    """Whether ``url`` names a SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def _prepare_sqlite_file(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


_SQLITE_BUSY = 5  # the primary result code of SQLITE_BUSY and of its extended codes
# How long a checkpoint waits for readers (and the write lock) before it settles for less.
CHECKPOINT_WAIT_S = 0.25


def is_sqlite_busy(error: BaseException) -> bool:
    """Whether a pysqlite error is SQLITE_BUSY (another connection holds the lock it needed)."""
    return getattr(error, "sqlite_errorcode", 0) & 0xFF == _SQLITE_BUSY


def restart_checkpoint(connection: Any) -> None:
    """Copy a WAL database's log into its file and have the next commit start the log over.

    For code whose connections do not checkpoint by themselves (``wal_autocheckpoint = 0`` on a
    connection the event loop uses: copying pages and syncing the file would stall the loop).
    RESTART, not PASSIVE: a passive checkpoint runs alongside other connections' commits and,
    under a steady load, never finds the whole log copied, which is what lets a writer start it
    over, so the log grew without end (8 concurrent writers: 10.5 MB after 1,200 small
    transactions). RESTART holds the write lock while it copies (writers meanwhile find the
    database busy) and waits for readers to leave the log, but only ``CHECKPOINT_WAIT_S``: past
    that it does what a passive one would, and the next checkpoint tries again. ``connection``:
    a pysqlite connection, or a pool's proxy of one; its busy timeout is restored after.
    """
    cursor = connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(CHECKPOINT_WAIT_S * 1000)}")
        try:
            cursor.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    finally:
        cursor.close()


def configure_sqlite_connection(
    connection: Any, *, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S
) -> None:
    """WAL, NORMAL sync, foreign keys and a busy timeout; transactions left to the caller.

    ``connection`` is a pysqlite connection (or SQLAlchemy's aiosqlite adapter of one). With
    ``isolation_level = None`` pysqlite never opens a transaction by itself: the caller writes
    ``BEGIN IMMEDIATE`` … ``COMMIT`` (``_tune_sqlite`` says why IMMEDIATE).
    """
    connection.isolation_level = None
    cursor = connection.cursor()
    # First, so that the pragmas below wait for a lock no longer than the caller wants.
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def connect_sqlite(
    url: str, *, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S, check_same_thread: bool = True
) -> sqlite3.Connection:
    """A plain pysqlite connection to ``url``'s file, tuned as the engines' connections are.

    For code that runs its own SQL on one connection in one thread (the connection belongs to
    the thread that opens it, unless ``check_same_thread`` is False). Only a file path: an
    in-memory database would be another one for each connection, and URI filenames are not
    needed by the suite. ``busy_timeout_s``: how long a statement waits for a lock (0: it fails
    with BUSY at once, opening included).
    """
    parsed = make_url(url)
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:") or parsed.query:
        raise UnsupportedDatabaseError(f"a plain SQLite file path is needed here, not {url!r}")
    _prepare_sqlite_file(url)
    connection = sqlite3.connect(
        database, timeout=busy_timeout_s, isolation_level=None, check_same_thread=check_same_thread
    )
    configure_sqlite_connection(connection, busy_timeout_s=busy_timeout_s)
    return connection


def _tune_sqlite(engine: Engine) -> None:
    """WAL, NORMAL sync and write transactions that take the lock up front.

    pysqlite's own transaction handling starts transactions lazily and as DEFERRED, so two
    writers can both read, then deadlock upgrading to a write lock. Beginning IMMEDIATE
    serialises writers at BEGIN, and busy_timeout makes them queue instead of failing.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        configure_sqlite_connection(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_sync_engine(url: str, **kwargs: Any) -> Engine:
    """A synchronous engine for ``url`` (services that run their store in worker threads)."""
    url = normalize_url(url, asynchronous=False)
    if is_sqlite(url):
        _prepare_sqlite_file(url)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
            **kwargs,
        )
        _tune_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


def create_async_db_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An asyncio engine for ``url`` (the orchestrator, which is async end to end)."""
    url = normalize_url(url, asynchronous=True)
    if is_sqlite(url):
        _prepare_sqlite_file(url)
        engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, **kwargs)
        _tune_sqlite(engine.sync_engine)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite has no timezone type and hands back naive datetimes; this stores UTC and
    re-attaches UTC on the way out, so ``*_at`` fields are always aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, _dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_text(value: datetime) -> str:
    """What ``UTCDateTime`` stores on SQLite, for plain SQL that writes the same columns.

    SQLAlchemy's SQLite ``DateTime`` writes naive UTC as ``YYYY-MM-DD HH:MM:SS.ffffff``,
    microseconds always written; the ORM reads back both this and what it wrote itself.
    """
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class SyncDatabase:
    """A service's synchronous engine for the app's lifetime, with its schema and readiness check."""

    def __init__(self, url: str, history: MigrationHistory) -> None:
        self.url = url
        self.history = history
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("the database is not open (the app's lifespan has not started)")
        return self._engine

    def open(self) -> Engine:
        """Create the engine and bring the schema to its latest migration."""
        from servicekit.migrations import upgrade  # it builds on this module

        self._engine = create_sync_engine(self.url)
        upgrade(self._engine, self.history)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    async def check(self) -> None:
        """Raise unless the database answers a query (for ``/readyz``)."""

        def ping() -> None:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        await anyio.to_thread.run_sync(ping)


def get_session(request: Request) -> Iterator[Session]:
    """One session per request, on the engine the lifespan put in the app's state."""
    with Session(request.state.engine) as session:
        yield session


# scope="function": the session closes as soon as the route returns, before the response is sent.
# Closed at the request's end instead, a read's transaction would keep its pooled connection (and,
# on SQLite, the write lock every transaction takes) while the response is serialised, and under
# load requests waiting for that lock or connection could hold every worker thread.
SessionDep = Annotated[Session, Depends(get_session)]


@contextmanager
def read_only(session: Session) -> Iterator[None]:
    """End a read's transaction inside the route (``with read_only(session): ...``), not at teardown.

    Teardown runs after the response is serialised, which for a sync route needs a worker
    thread; meanwhile the open transaction keeps its pooled connection (and, on SQLite, the
    write lock every transaction takes). Under load, requests waiting for that lock or
    connection can hold every worker thread, and nothing moves until their timeouts expire.
    """
    try:
        yield
    finally:
        session.rollback()
