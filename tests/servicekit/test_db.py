"""servicekit.db: every DATABASE_URL form of the contract, and engines for both backends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from servicekit.db.engines import create_async_db_engine, create_sync_engine
from servicekit.db.urls import UnsupportedDatabaseError, is_sqlite, normalize_url

# (DATABASE_URL as given, synchronous URL, asynchronous URL)
URL_FORMS = [
    ("sqlite:///rel.db", "sqlite+pysqlite:///rel.db", "sqlite+aiosqlite:///rel.db"),
    ("sqlite:///data/rel.db", "sqlite+pysqlite:///data/rel.db", "sqlite+aiosqlite:///data/rel.db"),
    ("sqlite:////abs.db", "sqlite+pysqlite:////abs.db", "sqlite+aiosqlite:////abs.db"),
    ("sqlite+aiosqlite:///rel.db", "sqlite+pysqlite:///rel.db", "sqlite+aiosqlite:///rel.db"),
    ("sqlite+aiosqlite:////abs.db", "sqlite+pysqlite:////abs.db", "sqlite+aiosqlite:////abs.db"),
    ("sqlite+pysqlite:///rel.db", "sqlite+pysqlite:///rel.db", "sqlite+aiosqlite:///rel.db"),
    ("sqlite://", "sqlite+pysqlite://", "sqlite+aiosqlite://"),
    (
        "postgresql://user@host/db",
        "postgresql+psycopg://user@host/db",
        "postgresql+psycopg://user@host/db",
    ),
    (
        "postgresql+asyncpg://user@host/db",
        "postgresql+psycopg://user@host/db",
        "postgresql+psycopg://user@host/db",
    ),
    (
        "postgresql+psycopg://user@host/db",
        "postgresql+psycopg://user@host/db",
        "postgresql+psycopg://user@host/db",
    ),
    (
        "postgresql+psycopg2://user@host/db",
        "postgresql+psycopg://user@host/db",
        "postgresql+psycopg://user@host/db",
    ),
    (
        "postgres://user@host/db",
        "postgresql+psycopg://user@host/db",
        "postgresql+psycopg://user@host/db",
    ),
    (
        "postgresql://user:p%40ss@host:5433/db?sslmode=disable",
        "postgresql+psycopg://user:p%40ss@host:5433/db?sslmode=disable",
        "postgresql+psycopg://user:p%40ss@host:5433/db?sslmode=disable",
    ),
]


@pytest.mark.parametrize(("url", "sync_url", "async_url"), URL_FORMS, ids=[u[0] for u in URL_FORMS])
def test_normalize_url_picks_the_suite_driver(url: str, sync_url: str, async_url: str) -> None:
    """Each accepted DATABASE_URL form maps to the driver the suite uses, keeping the rest intact."""
    assert normalize_url(url, asynchronous=False) == sync_url
    assert normalize_url(url, asynchronous=True) == async_url


def test_normalize_url_keeps_relative_and_absolute_sqlite_paths() -> None:
    """Three slashes name a relative file, four an absolute one."""
    assert make_url(normalize_url("sqlite:///rel.db", asynchronous=False)).database == "rel.db"
    assert make_url(normalize_url("sqlite:////abs.db", asynchronous=True)).database == "/abs.db"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://user@host/db",
        "mysql+aiomysql://user@host/db",
        "oracle://user@host/db",
        "mssql://h/db",
    ],
)
def test_unsupported_backend_raises(url: str) -> None:
    """A database other than SQLite or PostgreSQL is refused with a clear error."""
    with pytest.raises(UnsupportedDatabaseError, match="unsupported DATABASE_URL backend"):
        normalize_url(url, asynchronous=False)
    with pytest.raises(ValueError, match="sqlite or postgresql"):
        normalize_url(url, asynchronous=True)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///x.db", True),
        ("sqlite+aiosqlite:////x.db", True),
        ("postgresql://u@h/db", False),
        ("postgresql+asyncpg://u@h/db", False),
    ],
)
def test_is_sqlite(url: str, expected: bool) -> None:
    """is_sqlite looks at the backend, whatever the driver."""
    assert is_sqlite(url) is expected


def test_sync_sqlite_engine_creates_the_directory_and_uses_wal(tmp_path: Path) -> None:
    """A SQLite file under a missing directory is created there, in WAL mode with foreign keys on."""
    path = tmp_path / "nested" / "dir" / "kit.db"
    engine = create_sync_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
            connection.execute(text("INSERT INTO t VALUES (1)"))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT x FROM t")).scalar() == 1
    finally:
        engine.dispose()
    assert path.exists()


def test_sync_engine_rolls_back_uncommitted_writes(database_url: Callable[[str], str]) -> None:
    """The sync engine answers on both backends, and a rolled-back write leaves nothing behind."""
    engine = create_sync_engine(database_url("kit"))
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
        with engine.connect() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))
            connection.rollback()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM t")).scalar() == 0
    finally:
        engine.dispose()


@pytest.mark.anyio
async def test_async_engine_answers(database_url: Callable[[str], str]) -> None:
    """The asyncio engine answers on both backends and commits its writes."""
    engine = create_async_db_engine(database_url("kit"))
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (x INTEGER)"))
            await connection.execute(text("INSERT INTO t VALUES (41)"))
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT x + 1 FROM t"))).scalar() == 42
    finally:
        await engine.dispose()
