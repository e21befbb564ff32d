"""servicekit.db.database: the one engine's transactions on SQLite and PostgreSQL.

What it stores (as the models do), when it commits, the errors it raises, and where SQLite's
transactions run: on the event loop while the database is free, in the worker thread while another
connection holds the write lock, waiting for the thread's checkpoints that keep the WAL bounded.
On PostgreSQL: connections the server ended are never used, and cancelled callers give theirs back.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, select

from servicekit.db import database as kit_database
from servicekit.db import sqlite as kit_sqlite
from servicekit.db.database import (
    CHECKPOINT_AFTER_CHANGES,
    CONNECTION_TIMEOUTS,
    Database,
    PostgresDatabase,
    SqliteDatabase,
)
from servicekit.db.engines import create_sync_engine
from servicekit.db.sqlite import CHECKPOINT_WAIT_S
from servicekit.db.statements import SQL, Transaction
from servicekit.db.urls import is_sqlite, postgres_conninfo, sqlite_file
from servicekit.db.values import UTCDateTime, optional_timestamp_of, timestamp_of, uuid_of

pytestmark = pytest.mark.anyio

POSTGRES_ONLY = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


class DbKitTable(SQLModel, registry=registry()):
    """Tables of these tests only."""


class Thing(DbKitTable, table=True):
    __tablename__ = "dbkit_thing"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    label: str
    at: datetime = Field(sa_type=UTCDateTime)
    until: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Note(DbKitTable, table=True):
    """Rows with sequential keys: each transaction changes the same few pages (WAL sizes)."""

    __tablename__ = "dbkit_note"

    id: int | None = Field(default=None, primary_key=True)
    body: str


INSERT_THING = SQL(
    "INSERT INTO dbkit_thing (id, label, at, until) VALUES (:id, :label, :at, :until)"
)
LABELS = SQL("SELECT label FROM dbkit_thing ORDER BY label")
INSERT_NOTE = SQL("INSERT INTO dbkit_note (body) VALUES (:body)")
COUNT_NOTES = SQL("SELECT count(*) FROM dbkit_note")
# Rows each WAL test transaction inserts: a checkpoint falls due every CYCLE transactions.
ROWS_PER_TRANSACTION = 5
CYCLE = CHECKPOINT_AFTER_CHANGES // ROWS_PER_TRANSACTION


def _create_tables(url: str) -> None:
    engine = create_sync_engine(url)
    DbKitTable.metadata.create_all(engine)
    engine.dispose()


@pytest.fixture
def url(database_url: Callable[[str], str]) -> str:
    """A fresh database (SQLite, then PostgreSQL) holding the test tables."""
    url = database_url("kitdb")
    _create_tables(url)
    return url


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    """A SQLAlchemy engine on the same database, for reads and writes through the ORM."""
    engine = create_sync_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
async def database(url: str, anyio_backend: str) -> AsyncIterator[Database]:
    """The kit's engine on that database."""
    del anyio_backend  # requested so the fixture runs on the test's event loop
    database = Database.open(url)
    yield database
    await database.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A SQLite file holding the test tables."""
    path = tmp_path / "kitdb.db"
    _create_tables(f"sqlite:///{path}")
    return path


@pytest.fixture
async def sqlite_database(path: Path, anyio_backend: str) -> AsyncIterator[SqliteDatabase]:
    """The kit's engine on that SQLite file."""
    del anyio_backend  # requested so the fixture runs on the test's event loop
    database = Database.open(f"sqlite:///{path}")
    assert isinstance(database, SqliteDatabase)
    yield database
    await database.close()


@pytest.fixture
def checkpoints(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When each checkpoint the engine made started (``time.monotonic``)."""
    started: list[float] = []
    checkpoint = kit_sqlite.restart_checkpoint

    def counted(connection: Any) -> None:
        started.append(time.monotonic())
        checkpoint(connection)

    monkeypatch.setattr(kit_sqlite, "restart_checkpoint", counted)
    return started


def _thing(label: str) -> dict[str, Any]:
    return {"id": uuid.uuid4(), "label": label, "at": datetime.now(UTC), "until": None}


async def _insert(tx: Transaction, label: str) -> None:
    await tx.execute(INSERT_THING, _thing(label))


async def _labels(database: Database) -> list[str]:
    async def read(tx: Transaction) -> list[str]:
        return [row[0] for row in await tx.all(LABELS)]

    return await database.run(read)


def _sqlite_labels(path: Path) -> list[str]:
    """The labels as another connection reads them, outside the engine."""
    with closing(sqlite3.connect(path)) as connection:
        return [row[0] for row in connection.execute("SELECT label FROM dbkit_thing ORDER BY 1")]


def _sqlite_notes(path: Path) -> int:
    with closing(sqlite3.connect(path)) as connection:
        count: int = connection.execute("SELECT count(*) FROM dbkit_note").fetchone()[0]
        return count


def _commit_elsewhere(url: str, statement: str) -> None:
    """Run ``statement`` on a connection of its own, outside the engine, committed."""
    if is_sqlite(url):
        with closing(sqlite3.connect(sqlite_file(url), isolation_level=None)) as connection:
            connection.execute(statement)
    else:
        with psycopg.connect(postgres_conninfo(url), autocommit=True) as connection:
            connection.execute(statement)


async def _notes(tx: Transaction) -> None:
    await tx.execute_many(INSERT_NOTE, [{"body": "x" * 200}] * ROWS_PER_TRANSACTION)


def _wal_size(path: Path) -> int:
    return path.with_name(path.name + "-wal").stat().st_size


# What is stored, and when it is committed ------------------------------------------------------


def test_statements_are_written_once_for_both_drivers() -> None:
    """``:name`` becomes psycopg's ``%(name)s``; casts and literals are left alone."""
    statement = SQL("SELECT :a, x::text, ':b', \"c:d\" FROM t WHERE id = :id_2")
    assert statement.sqlite == "SELECT :a, x::text, ':b', \"c:d\" FROM t WHERE id = :id_2"
    assert statement.postgres == "SELECT %(a)s, x::text, ':b', \"c:d\" FROM t WHERE id = %(id_2)s"
    with pytest.raises(ValueError, match="%"):
        SQL("SELECT 1 % 2")


async def test_values_are_stored_as_the_orm_stores_them(database: Database, engine: Engine) -> None:
    """A uuid and UTC timestamps written in plain SQL read back through the ORM, and vice versa."""
    thing_id = uuid.uuid4()
    at = datetime(2026, 11, 22, 3, 2, 3, tzinfo=timezone(timedelta(hours=2)))  # 01:02:03 UTC
    until = datetime(2026, 11, 22, 1, 2, 3, 456789, tzinfo=UTC)

    async def write(tx: Transaction) -> None:
        await tx.execute(INSERT_THING, {"id": thing_id, "label": "plain", "at": at, "until": until})

    await database.run(write)
    with Session(engine) as session:
        thing = session.get(Thing, thing_id)
        assert thing is not None
        assert (thing.label, thing.at, thing.until) == ("plain", at, until)
        assert thing.at.utcoffset() == timedelta(0)
        session.add(Thing(label="orm", at=at))
        session.commit()
        orm_id = session.exec(select(Thing.id).where(Thing.label == "orm")).one()

    async def read(tx: Transaction) -> Any:
        return await tx.one(SQL("SELECT id, at, until FROM dbkit_thing WHERE label = 'orm'"))

    row = await database.run(read)
    assert uuid_of(row[0]) == orm_id
    assert timestamp_of(row[1]) == at
    assert timestamp_of(row[1]).tzinfo is UTC
    assert optional_timestamp_of(row[2]) is None

    if database.postgres:
        return
    # On SQLite both rows hold the same text: CHAR(32) hex and naive UTC with microseconds.
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT label, id, at, typeof(id), typeof(at) FROM dbkit_thing ORDER BY label")
        ).all()
    assert [tuple(row) for row in stored] == [
        ("orm", orm_id.hex, "2026-11-22 01:02:03.000000", "text", "text"),
        ("plain", thing_id.hex, "2026-11-22 01:02:03.000000", "text", "text"),
    ]


async def test_a_naive_timestamp_is_refused(database: Database) -> None:
    """A datetime without a zone is not stored (it would be read as UTC whatever it meant)."""

    async def write(tx: Transaction) -> None:
        await tx.execute(INSERT_THING, {**_thing("naive"), "at": datetime(2026, 1, 2, 3, 4, 5)})

    with pytest.raises(ValueError, match="naive"):
        await database.run(write)
    assert await _labels(database) == []


async def test_run_commits_when_work_returns_and_rolls_back_when_it_raises(
    database: Database, engine: Engine
) -> None:
    """What work wrote is kept if it returns, and not kept if it raises."""

    async def keep(tx: Transaction) -> str:
        await _insert(tx, "kept")
        return "done"

    async def fail(tx: Transaction) -> None:
        await _insert(tx, "dropped")
        raise RuntimeError("boom")

    assert await database.run(keep) == "done"
    with pytest.raises(RuntimeError, match="boom"):
        await database.run(fail)
    with Session(engine) as session:
        assert session.exec(select(Thing.label)).all() == ["kept"]


async def test_rollback_undoes_what_came_before_and_the_rest_commits(database: Database) -> None:
    """``transaction.rollback()`` mid-work undoes the statements so far; the next ones are kept."""

    async def work(tx: Transaction) -> list[str]:
        await _insert(tx, "undone")
        await tx.rollback()
        seen = [row[0] for row in await tx.all(LABELS)]
        await _insert(tx, "kept")
        return seen

    assert await database.run(work) == []
    assert await _labels(database) == ["kept"]


async def test_execute_is_a_transaction_of_its_own(database: Database) -> None:
    """One statement is committed at once, and says how many rows it changed or gave."""
    written = await database.execute(INSERT_THING, _thing("alone"))
    assert written.rowcount == 1
    await database.ping()
    read = await database.execute(LABELS)
    assert read.rows == [("alone",)]
    assert await _labels(database) == ["alone"]


async def test_a_unique_key_violation_is_an_integrity_error(database: Database) -> None:
    """A duplicate key is SQLAlchemy's IntegrityError on both backends; its transaction is undone
    and the database goes on."""
    values = _thing("first")
    await database.execute(INSERT_THING, values)

    async def duplicate(tx: Transaction) -> None:
        await _insert(tx, "before")
        await tx.execute(INSERT_THING, {**values, "label": "duplicate"})

    with pytest.raises(IntegrityError):
        await database.run(duplicate)
    with pytest.raises(IntegrityError):
        await database.execute(INSERT_THING, {**values, "label": "duplicate"})
    await database.execute(INSERT_THING, _thing("after"))
    assert await _labels(database) == ["after", "first"]


async def test_read_only_transactions_read_one_snapshot(database: Database, url: str) -> None:
    """A read-only transaction does not see what another connection commits meanwhile."""

    async def count(tx: Transaction) -> int:
        row = await tx.one(COUNT_NOTES)
        assert row is not None
        return int(row[0])

    async def read_twice(tx: Transaction) -> tuple[int, int]:
        before = await count(tx)
        _commit_elsewhere(url, "INSERT INTO dbkit_note (body) VALUES ('elsewhere')")
        return before, await count(tx)

    assert await database.run(read_twice, read_only=True) == (0, 0)
    assert (await database.execute(COUNT_NOTES)).rows == [(1,)]


@POSTGRES_ONLY
async def test_read_only_transactions_refuse_writes_on_postgres(database: Database) -> None:
    """PostgreSQL refuses a write in a read-only transaction, and nothing is written."""
    with pytest.raises(DBAPIError, match="read-only"):
        await database.run(lambda tx: _insert(tx, "written"), read_only=True)
    assert await _labels(database) == []


# SQLite: the event loop, the worker thread, checkpoints ----------------------------------------


_HOLD_IN_A_PROCESS = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("COMMIT")
"""


@contextmanager
def holding_the_write_lock(path: Path, where: str) -> Iterator[Callable[[], None]]:
    """Another connection holds ``path``'s write lock (in this process or another); yields the
    function that releases it."""
    if where == "connection":
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield lambda: connection.execute("COMMIT")
        finally:
            connection.close()
        return
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD_IN_A_PROCESS, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    stdin = process.stdin

    def release() -> None:
        if not stdin.closed:
            stdin.write("\n")
            stdin.close()
        process.wait(timeout=5)

    try:
        assert process.stdout.readline() == "locked\n"
        yield release
    finally:
        release()
        process.stdout.close()


async def test_transactions_run_on_the_event_loop_while_the_database_is_free(
    sqlite_database: SqliteDatabase, path: Path
) -> None:
    """With nothing else writing, every kind of transaction runs on the loop, none in a thread."""
    threads: list[threading.Thread] = []

    async def work(tx: Transaction) -> None:
        threads.append(threading.current_thread())
        await _insert(tx, f"w{len(threads):02}")

    for _ in range(20):
        await sqlite_database.run(work)
    assert await _labels(sqlite_database) == [f"w{n:02}" for n in range(1, 21)]
    await sqlite_database.run(lambda tx: tx.all(LABELS), read_only=True)
    await sqlite_database.execute(LABELS)
    assert threads == [threading.current_thread()] * 20
    assert (sqlite_database.on_loop, sqlite_database.in_thread) == (23, 0)
    assert len(_sqlite_labels(path)) == 20


async def _write_while_locked(
    database: SqliteDatabase,
    path: Path,
    where: str,
    work: Callable[[Transaction], Awaitable[None]],
) -> None:
    """Run ``work`` while another connection (``where``) holds the write lock for 0.3 s: it must
    wait, the loop ticking meanwhile, and commit within 5 s of the lock's release."""
    with holding_the_write_lock(path, where) as release:
        written = anyio.Event()
        ticks = 0

        async def write() -> None:
            await database.run(work)
            written.set()

        async def tick() -> None:
            nonlocal ticks
            while True:
                await anyio.sleep(0.01)
                ticks += 1

        async with anyio.create_task_group() as group:
            group.start_soon(tick)
            group.start_soon(write)
            await anyio.sleep(0.3)
            assert not written.is_set()
            assert ticks >= 10  # about 30 unless the loop was blocked
            release()
            with anyio.fail_after(5):
                await written.wait()
            group.cancel_scope.cancel()


@pytest.fixture
def thread_when_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transaction that finds the database busy goes to the worker thread at once, without
    trying again on the loop first (``sqlite.busy_delays``): the thread's path under test."""
    monkeypatch.setattr(kit_sqlite, "LOOP_BUSY_WAIT_S", 0.0)


@pytest.mark.parametrize("where", ["connection", "process"])
async def test_a_locked_database_is_waited_for_on_the_loop_then_written_there(
    sqlite_database: SqliteDatabase, path: Path, where: str
) -> None:
    """While another connection (here, or in another process) holds the write lock for less than
    ``LOOP_BUSY_WAIT_S``, a transaction is tried again on the loop after short sleeps, the loop
    serving others meanwhile, and commits there once the lock is let go."""
    await sqlite_database.run(lambda tx: _insert(tx, "free"))
    await _write_while_locked(sqlite_database, path, where, lambda tx: _insert(tx, "locked"))
    assert (sqlite_database.on_loop, sqlite_database.in_thread) == (2, 0)
    # 0.3 s of waiting at sleeps of at most 2 ms: the lock was looked for often.
    assert sqlite_database.busy_retries >= 100
    assert _sqlite_labels(path) == ["free", "locked"]


@pytest.mark.parametrize("where", ["connection", "process"])
@pytest.mark.usefixtures("thread_when_busy")
async def test_a_locked_database_is_written_from_the_thread_without_blocking_the_loop(
    sqlite_database: SqliteDatabase, path: Path, where: str
) -> None:
    """While another connection (here, or in another process) holds the write lock, a transaction
    waits for it in the worker thread; the loop goes on meanwhile, and the work is applied once."""
    threads: list[threading.Thread] = []

    def writing(label: str) -> Callable[[Transaction], Awaitable[None]]:
        async def work(tx: Transaction) -> None:
            threads.append(threading.current_thread())
            await _insert(tx, label)

        return work

    await sqlite_database.run(writing("free"))
    await _write_while_locked(sqlite_database, path, where, writing("locked"))

    assert threads[0] is threading.current_thread()  # the first write, on the loop
    assert threads[1] is threading.current_thread()  # the attempt that found the lock taken
    assert threads[2] is not threading.current_thread()
    assert len(threads) == 3
    assert (sqlite_database.on_loop, sqlite_database.in_thread) == (1, 1)
    assert _sqlite_labels(path) == ["free", "locked"]
    await sqlite_database.run(writing("free-again"))  # back on the loop
    assert (sqlite_database.on_loop, sqlite_database.in_thread) == (2, 1)


@pytest.mark.usefixtures("thread_when_busy")
async def test_a_transaction_in_the_thread_commits_or_rolls_back_as_on_the_loop(
    sqlite_database: SqliteDatabase, path: Path
) -> None:
    """Sent to the thread, work that returns is committed and work that raises is undone."""

    async def fail(tx: Transaction) -> None:
        await _insert(tx, "dropped")
        raise RuntimeError("boom")

    failed: list[BaseException] = []

    async def fail_quietly() -> None:
        try:
            await sqlite_database.run(fail)
        except RuntimeError as exc:
            failed.append(exc)

    with holding_the_write_lock(path, "connection") as release:
        async with anyio.create_task_group() as group:
            group.start_soon(sqlite_database.run, lambda tx: _insert(tx, "kept"))
            group.start_soon(fail_quietly)
            await anyio.sleep(0.05)
            release()
    assert len(failed) == 1
    assert sqlite_database.in_thread == 2
    assert _sqlite_labels(path) == ["kept"]


async def test_a_read_only_transaction_reads_on_the_loop_while_the_write_lock_is_taken(
    sqlite_database: SqliteDatabase, path: Path
) -> None:
    """A reader needs no write lock: it runs on the loop, and sees only what was committed."""
    await sqlite_database.run(lambda tx: _insert(tx, "committed"))
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(
            "INSERT INTO dbkit_thing (id, label, at) VALUES (?, 'uncommitted', ?)",
            (uuid.uuid4().hex, "2026-01-01 00:00:00.000000"),
        )
        labels = await sqlite_database.run(lambda tx: tx.all(LABELS), read_only=True)
        writer.execute("ROLLBACK")
    assert labels == [("committed",)]
    assert (sqlite_database.on_loop, sqlite_database.in_thread) == (2, 0)


async def test_the_wal_stays_bounded_when_the_loop_writes(
    sqlite_database: SqliteDatabase, path: Path, checkpoints: list[float]
) -> None:
    """The loop's connection never checkpoints; the thread does, every CHECKPOINT_AFTER_CHANGES
    row changes, and the next commit starts the WAL over, so it does not grow with the number of
    transactions (never checkpointed, these 1,500 would leave one about ten times as large)."""
    for _ in range(CYCLE - 1):
        await sqlite_database.run(_notes)
    assert checkpoints == []
    grown = _wal_size(path)
    await sqlite_database.run(_notes)  # the CHECKPOINT_AFTER_CHANGES-th change
    assert len(checkpoints) == 1
    one_cycle = _wal_size(path)
    assert one_cycle >= grown
    await sqlite_database.run(_notes)
    assert _wal_size(path) == one_cycle  # written at its start again, not appended
    for _ in range(9 * CYCLE - 1):
        await sqlite_database.run(_notes)
    assert len(checkpoints) == 10
    assert _wal_size(path) <= one_cycle * 1.1, (_wal_size(path), one_cycle)
    assert _sqlite_notes(path) == 10 * CHECKPOINT_AFTER_CHANGES
    assert (sqlite_database.on_loop, sqlite_database.in_thread) == (10 * CYCLE, 0)


async def test_transactions_wait_for_a_checkpoint_instead_of_queueing_in_the_thread(
    sqlite_database: SqliteDatabase, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the thread checkpoints (holding the write lock), concurrent writers wait for it and
    then commit on the loop again: the thread is handed checkpoints only. (Handed to the thread
    instead, transactions kept it holding the write lock, and every loop transaction that found
    it busy queued there too.) The WAL stays bounded meanwhile."""
    checkpoint = kit_sqlite.restart_checkpoint
    sizes: list[int] = []

    def slow_checkpoint(connection: Any) -> None:
        sizes.append(_wal_size(path))
        connection.execute("BEGIN IMMEDIATE")  # a long copy: writers would find it busy
        time.sleep(0.02)
        connection.execute("ROLLBACK")
        checkpoint(connection)

    monkeypatch.setattr(kit_sqlite, "restart_checkpoint", slow_checkpoint)
    writers, each = 16, CYCLE // 4  # 16 × 37 transactions: 4 checkpoints

    async def writer() -> None:
        for _ in range(each):
            await sqlite_database.run(_notes)
            await anyio.sleep(0)  # let the other writers in, as concurrent requests do

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            for _ in range(writers):
                group.start_soon(writer)
    total = writers * each
    assert len(sizes) == total * ROWS_PER_TRANSACTION // CHECKPOINT_AFTER_CHANGES == 3
    assert (sqlite_database.on_loop, sqlite_database.in_thread) == (total, 0)
    assert _sqlite_notes(path) == total * ROWS_PER_TRANSACTION
    assert _wal_size(path) <= sizes[0] * 1.1, (_wal_size(path), sizes)


async def test_a_long_reader_delays_writers_only_briefly(
    sqlite_database: SqliteDatabase, path: Path, checkpoints: list[float]
) -> None:
    """A checkpoint waits for a reader still holding an old snapshot (a dashboard query, an
    operator's sqlite3 shell) at most CHECKPOINT_WAIT_S, not the 30 s busy timeout: the writes
    queued behind it go on, on the loop."""
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM dbkit_note").fetchall()  # holds its snapshot
    try:
        started = time.monotonic()
        with anyio.fail_after(10):
            for _ in range(2 * CYCLE + 1):
                await sqlite_database.run(_notes)
        elapsed = time.monotonic() - started
        assert reader.execute("SELECT count(*) FROM dbkit_note").fetchone() == (0,)
    finally:
        reader.execute("COMMIT")
        reader.close()
    assert len(checkpoints) == 2
    # Each checkpoint waited for the reader, but only CHECKPOINT_WAIT_S.
    assert CHECKPOINT_WAIT_S <= elapsed < 2 * CHECKPOINT_WAIT_S + 1.5, elapsed
    assert (sqlite_database.on_loop, sqlite_database.in_thread) == (2 * CYCLE + 1, 0)
    assert _sqlite_notes(path) == (2 * CYCLE + 1) * ROWS_PER_TRANSACTION


@pytest.mark.usefixtures("thread_when_busy")
async def test_cancelled_callers_leave_the_database_usable_and_closable(
    sqlite_database: SqliteDatabase, path: Path
) -> None:
    """Callers that stop waiting (one whose transaction is in the thread, one queued for it)
    neither block the thread nor keep the database from closing. The one in the thread finishes
    its transaction (its connection cannot be abandoned mid-way); the queued one never runs."""

    async def write(label: str) -> None:
        await sqlite_database.run(lambda tx: _insert(tx, label))

    with holding_the_write_lock(path, "connection") as release:

        async def release_later() -> None:
            await anyio.sleep(0.3)
            release()

        async with anyio.create_task_group() as group:
            group.start_soon(release_later)
            with anyio.fail_after(5), anyio.move_on_after(0.1) as stopped:
                async with anyio.create_task_group() as callers:
                    callers.start_soon(write, "in-the-thread")
                    callers.start_soon(write, "queued")
        assert stopped.cancelled_caught
    with anyio.fail_after(5):
        await write("after")
    assert _sqlite_labels(path) == ["after", "in-the-thread"]
    assert (sqlite_database.on_loop, sqlite_database.in_thread) == (1, 2)
    with anyio.fail_after(5):
        await sqlite_database.close()
    with pytest.raises(RuntimeError, match="closed"):
        await write("closed")
    await sqlite_database.close()  # again: nothing to do


@pytest.mark.usefixtures("thread_when_busy")
async def test_close_closes_the_loop_and_thread_connections(
    sqlite_database: SqliteDatabase, path: Path
) -> None:
    """Closing ends both connections: SQLite removes the WAL when the last one closes."""
    await sqlite_database.run(lambda tx: _insert(tx, "on-the-loop"))
    with holding_the_write_lock(path, "connection") as release:
        async with anyio.create_task_group() as group:
            group.start_soon(sqlite_database.run, lambda tx: _insert(tx, "in-the-thread"))
            await anyio.sleep(0.05)
            release()
    assert (sqlite_database.on_loop, sqlite_database.in_thread) == (1, 1)
    wal = path.with_name(path.name + "-wal")
    assert wal.exists()
    await sqlite_database.close()
    assert not wal.exists()
    assert _sqlite_labels(path) == ["in-the-thread", "on-the-loop"]


def _close_what_is_left(database: SqliteDatabase) -> None:
    """Close the connections a closed database still holds (the leaks shown below)."""
    for connection in (database._loop_connection, database._thread_connection):
        if connection is not None:
            connection.close()


@pytest.mark.usefixtures("thread_when_busy")
async def test_closing_with_transactions_queued_for_the_thread_leaves_no_connection_open(
    sqlite_database: SqliteDatabase, path: Path
) -> None:
    """Transactions queued for the thread before ``close`` run, and then every connection is
    closed: SQLite removes the WAL when the last one closes."""
    with holding_the_write_lock(path, "connection") as release:
        async with anyio.create_task_group() as group:
            group.start_soon(sqlite_database.run, lambda tx: _insert(tx, "running"))
            group.start_soon(sqlite_database.run, lambda tx: _insert(tx, "queued"))
            await anyio.sleep(0.05)
            group.start_soon(sqlite_database.close)
            await anyio.sleep(0.05)
            release()
    try:
        assert _sqlite_labels(path) == ["queued", "running"]
        assert not path.with_name(path.name + "-wal").exists()
    finally:
        _close_what_is_left(sqlite_database)


async def test_closing_during_a_checkpoint_leaves_no_connection_open(
    sqlite_database: SqliteDatabase, path: Path
) -> None:
    """A transaction that waited for a checkpoint while the database closed does not open a
    connection again: once everything has ended, no connection is left open."""
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM dbkit_note").fetchall()  # the checkpoint waits for it

    async def changes(tx: Transaction) -> None:
        await tx.execute_many(INSERT_NOTE, [{"body": "x"}] * CHECKPOINT_AFTER_CHANGES)

    async def waiter() -> None:
        with contextlib.suppress(RuntimeError):  # refused as closed: fine
            await sqlite_database.run(lambda tx: _insert(tx, "waited"))

    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(sqlite_database.run, changes)  # then a checkpoint
                await anyio.sleep(0.05)
                group.start_soon(waiter)
                await anyio.sleep(0.05)
                await sqlite_database.close()
    finally:
        reader.execute("COMMIT")
        reader.close()
    try:
        assert not path.with_name(path.name + "-wal").exists()
    finally:
        _close_what_is_left(sqlite_database)


# PostgreSQL: the pool --------------------------------------------------------------------------


async def _backend_pid(tx: Transaction) -> int:
    row = await tx.one(SQL("SELECT pg_backend_pid()"))
    assert row is not None
    return int(row[0])


def _terminate_other_sessions(url: str) -> set[int]:
    """End every other session on ``url``'s database, as a server restart would; their pids."""
    with psycopg.connect(postgres_conninfo(url), autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return {pid for pid, terminated in rows if terminated}


async def _fill_pool(database: Database, connections: int) -> None:
    """Have the pool hold at least ``connections`` connections, idle."""

    async def hold(tx: Transaction) -> None:
        await tx.execute(SQL("SELECT pg_sleep(0.05)"))

    async with anyio.create_task_group() as group:
        for _ in range(connections):
            group.start_soon(database.run, hold)


@POSTGRES_ONLY
async def test_connections_the_server_ended_are_replaced_before_use(
    database: Database, url: str
) -> None:
    """Without a ping per transaction, a pooled connection the server terminated is never used."""
    await database.run(lambda tx: _insert(tx, "before"))
    ended = _terminate_other_sessions(url)
    assert len(ended) >= 2  # the pool's POOL_MIN_SIZE connections
    await anyio.sleep(0.2)  # the server has closed their sockets
    with anyio.fail_after(10):
        for _ in range(5):
            assert await database.run(_backend_pid) not in ended
        await database.run(lambda tx: _insert(tx, "after"))
    assert await _labels(database) == ["after", "before"]


@POSTGRES_ONLY
async def test_a_pool_of_connections_the_server_ended_is_replaced_without_waiting(
    database: Database, url: str
) -> None:
    """After the server ended every pooled connection (a restart), the next transaction gets a new
    connection at once, not after a wait per dead connection."""
    await _fill_pool(database, 5)
    assert len(_terminate_other_sessions(url)) >= 5
    await anyio.sleep(0.2)
    with anyio.fail_after(0.8):  # the pool's first back-off alone is 0.9-1.1 s
        await database.run(_backend_pid)


@POSTGRES_ONLY
async def test_a_connection_goes_from_transaction_to_transaction_and_back_to_the_pool_in_time(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One transaction after another runs on one connection kept from the last, without asking
    the pool each time; a connection left in a transaction never is; once KEEP_FOR_S has
    passed, each goes back to the pool."""
    assert isinstance(database, PostgresDatabase)
    pids = {await database.run(_backend_pid) for _ in range(20)}
    await database.execute(SQL("SELECT 1"))
    pool = database._pool
    assert pool is not None
    asked = pool.get_stats().get("requests_num", 0)
    for _ in range(30):
        pids.add(await database.run(_backend_pid))
        await database.write(SQL("SELECT 1"))
    assert len(pids) == 1
    assert pool.get_stats().get("requests_num", 0) == asked

    async def left_open(tx: Transaction) -> None:
        # BEGIN by hand, then the work fails: the rollback is what ends it, not a commit.
        await tx.execute(SQL("SELECT 1"))
        raise RuntimeError("the work failed")

    with pytest.raises(RuntimeError):
        await database.run(left_open)
    assert all(
        connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        for connection in database._kept
    )

    monkeypatch.setattr(kit_database, "KEEP_FOR_S", 0.0)
    while database._kept:  # those kept go back, as once their time had passed
        await database._to_pool(database._kept.pop())
    asked = pool.get_stats().get("requests_num", 0)
    for _ in range(10):
        await database.run(_backend_pid)
    assert pool.get_stats().get("requests_num", 0) - asked >= 10
    assert database._kept == []


@POSTGRES_ONLY
async def test_transactions_waiting_for_the_pool_get_the_connections_others_are_done_with(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three times as many transactions at once as the pool has connections: those waiting in
    the pool are handed the connections the first are done with (none kept from them for a
    later transaction), so every one commits, long before the pool's timeout."""
    assert isinstance(database, PostgresDatabase)
    monkeypatch.setattr(kit_database, "POOL_TIMEOUT_S", 5.0)
    await database.execute(SQL("CREATE TABLE IF NOT EXISTS waited (n integer)"))
    await database.execute(SQL("DELETE FROM waited"))

    async def hold(tx: Transaction) -> None:
        await tx.execute(SQL("SELECT pg_sleep(0.05)"))
        await tx.execute(SQL("INSERT INTO waited (n) VALUES (1)"))

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        for _ in range(3 * kit_database.POOL_MAX_SIZE):
            group.start_soon(database.run, hold)
    assert time.monotonic() - started < kit_database.POOL_TIMEOUT_S
    count = await database.run(lambda tx: tx.one(SQL("SELECT count(*) FROM waited")))
    assert count is not None
    assert count[0] == 3 * kit_database.POOL_MAX_SIZE
    assert len(database._kept) <= kit_database.POOL_MAX_SIZE


@POSTGRES_ONLY
async def test_a_caller_cancelled_mid_statement_gives_its_connection_back(
    database: Database,
) -> None:
    """A caller cancelled while its statement runs has it cancelled and rolled back on the
    server, without waiting for it; the pool goes on and closes."""

    async def slow(tx: Transaction) -> None:
        await _insert(tx, "cancelled")
        await tx.execute(SQL("SELECT pg_sleep(5)"))

    started = time.monotonic()
    with anyio.fail_after(10), anyio.move_on_after(0.2) as stopped:
        await database.run(slow)
    assert stopped.cancelled_caught
    assert time.monotonic() - started < 3
    with anyio.fail_after(10):
        await database.run(lambda tx: _insert(tx, "after"))
        assert await _labels(database) == ["after"]
        await database.close()
    with pytest.raises(RuntimeError, match="closed"):
        await database.run(_backend_pid)


def test_postgresql_connections_time_out_on_an_unreachable_server_unless_the_url_says_otherwise() -> (
    None
):
    """A server that became unreachable fails a connection within seconds (libpq's network
    timeouts, ``tests/netns`` (e) shows the 503s they lead to), and the URL's own values win."""
    plain = psycopg.conninfo.conninfo_to_dict(
        PostgresDatabase("postgresql://app:secret@db:5432/orders", name="t").conninfo
    )
    assert plain == CONNECTION_TIMEOUTS | {
        "user": "app",
        "password": "secret",
        "host": "db",
        "port": "5432",
        "dbname": "orders",
    }
    own = PostgresDatabase(
        "postgresql://db/orders?tcp_user_timeout=3000&connect_timeout=1", name="t"
    ).conninfo
    parsed = psycopg.conninfo.conninfo_to_dict(own)
    assert (parsed["tcp_user_timeout"], parsed["connect_timeout"]) == ("3000", "1")
    assert parsed["keepalives_idle"] == "5"


def test_a_postgresql_url_s_query_reaches_libpq_decoded() -> None:
    """``?options=-c%20…`` arrives with its spaces (a rendered URL would turn them into ``+``)."""
    parsed = psycopg.conninfo.conninfo_to_dict(
        postgres_conninfo(
            "postgresql+psycopg://app:p%40ss@db:5433/orders"
            "?options=-c%20statement_timeout%3D5000&sslmode=disable"
        )
    )
    assert parsed == {
        "host": "db",
        "port": "5433",
        "user": "app",
        "password": "p@ss",
        "dbname": "orders",
        "options": "-c statement_timeout=5000",
        "sslmode": "disable",
    }
