"""servicekit.db.group_commit: writes of many callers committed together, each answered alone.

On PostgreSQL: the writes behind those under way go as one transaction; each caller still gets
its own answer, a failing statement fails only its own caller, a write cancelled before it was
sent is never applied, and a lost connection fails its batch without sending it again. On
SQLite ``write`` is a shared transaction (``test_sqlite_group_commit``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import psycopg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from servicekit.db.database import Database, PostgresDatabase
from servicekit.db.group_commit import GroupCommit, _Write
from servicekit.db.statements import SQL, Result, Transaction
from servicekit.db.urls import postgres_conninfo

pytestmark = pytest.mark.anyio

POSTGRES_ONLY = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

CREATE = SQL("CREATE TABLE gc_item (id INTEGER PRIMARY KEY, hits INTEGER NOT NULL DEFAULT 0)")
ADD = SQL("INSERT INTO gc_item (id) VALUES (:id)")
HIT = SQL("UPDATE gc_item SET hits = hits + 1 WHERE id = :id")
# One write that takes a while: it holds a place among those under way.
SLOW_HIT = SQL("UPDATE gc_item SET hits = hits + 1 WHERE id = :id AND pg_sleep(:s) IS NOT NULL")
SLOW_IN_THE_BATCH = SQL(
    "UPDATE gc_item SET hits = hits + 1 WHERE id = :id AND pg_sleep(:s) IS NOT NULL"
    " AND 'in the batch' <> ''"
)
HITS = SQL("SELECT id, hits FROM gc_item ORDER BY id")


@pytest.fixture
async def database(
    database_url: Callable[[str], str], anyio_backend: str
) -> AsyncIterator[Database]:
    del anyio_backend  # requested so the fixture runs on the test's event loop
    opened = Database.open(database_url("groupcommit"))
    await opened.execute(CREATE)
    yield opened
    await opened.close()


async def _hits(database: Database) -> dict[int, int]:
    return {row[0]: row[1] for row in (await database.execute(HITS)).rows}


async def _add(database: Database, ids: range) -> None:
    async def work(tx: Transaction) -> None:
        for i in ids:
            await tx.execute(ADD, {"id": i})

    await database.run(work)


async def test_writes_under_load_are_each_applied_once_with_their_own_answer(
    database: Database,
) -> None:
    """200 writes at once, some matching no row: each caller gets its own row count, each
    applied once; on PostgreSQL most of them went in batches."""
    await _add(database, range(1, 41))
    targets = [i % 40 + 1 if i % 5 else 1000 + i for i in range(200)]
    answers: dict[int, int] = {}

    async def hit(n: int) -> None:
        answers[n] = (await database.write(HIT, {"id": targets[n]})).rowcount

    async with anyio.create_task_group() as group:
        for n in range(200):
            group.start_soon(hit, n)
    assert answers == {n: 1 if targets[n] < 1000 else 0 for n in range(200)}
    expected = Counter(t for t in targets if t < 1000)
    assert await _hits(database) == {i: expected[i] for i in range(1, 41)}
    if isinstance(database, PostgresDatabase):
        stats = database.group_commit.stats
        assert stats.alone + stats.batched == 200, stats
        assert stats.batches >= 1, stats
        assert stats.batched >= 100, stats


async def _occupy(database: Database, group: anyio.abc.TaskGroup, seconds: float) -> None:
    """Fill the places under way with slow writes, so that the next writes wait and batch."""
    assert isinstance(database, PostgresDatabase)
    for _ in range(database.group_commit.concurrency):
        group.start_soon(database.write, SLOW_HIT, {"id": 1, "s": seconds})
    await anyio.sleep(0.05)


@POSTGRES_ONLY
async def test_a_failing_write_fails_alone_and_the_rest_of_its_batch_is_applied_once(
    database: Database,
) -> None:
    await _add(database, range(1, 2))
    outcomes: dict[int, str] = {}

    async def add(i: int) -> None:
        try:
            await database.write(ADD, {"id": i})
            outcomes[i] = "added"
        except IntegrityError:
            outcomes[i] = "taken"

    async with anyio.create_task_group() as group:
        await _occupy(database, group, 0.3)
        for i in [*range(100, 115), 1, *range(115, 130)]:  # 1 exists already
            group.start_soon(add, i)
    assert outcomes == dict.fromkeys(range(100, 130), "added") | {1: "taken"}
    assert set(await _hits(database)) == {1, *range(100, 130)}
    assert isinstance(database, PostgresDatabase)
    assert database.group_commit.stats.batches_retried >= 1


@POSTGRES_ONLY
async def test_batches_that_deadlock_are_each_applied_once_with_their_own_answers(
    database: Database,
) -> None:
    """Two batches take the same two rows in opposite orders: the server aborts one (a
    deadlock, an OperationalError like a lost connection, yet nothing of it was applied), and
    its writes are sent again alone, so every caller gets its own answer and each hit lands once."""
    assert isinstance(database, PostgresDatabase)
    await _add(database, range(1, 3))
    group_commit = database.group_commit

    def batch(first: int, second: int) -> list[_Write]:
        return [
            _Write(HIT, {"id": first}),
            _Write(SLOW_HIT, {"id": second, "s": 0.2}),  # after the other batch took ``second``
        ]

    batches = [batch(1, 2), batch(2, 1)]
    async with anyio.create_task_group() as group:
        for one in batches:
            group.start_soon(group_commit._send, one)
    answers = [write.answer.result().rowcount for one in batches for write in one]
    assert answers == [1, 1, 1, 1]
    assert await _hits(database) == {1: 2, 2: 2}
    assert group_commit.stats.batches_retried == 1
    assert group_commit.stats.batches == 1


@POSTGRES_ONLY
async def test_a_write_cancelled_while_waiting_is_never_sent(database: Database) -> None:
    await _add(database, range(1, 2))
    async with anyio.create_task_group() as group:
        await _occupy(database, group, 0.3)
        with anyio.move_on_after(0.05) as gave_up:
            await database.write(ADD, {"id": 7})
        assert gave_up.cancelled_caught
        group.start_soon(database.write, ADD, {"id": 8})
    assert set(await _hits(database)) == {1, 8}


@POSTGRES_ONLY
async def test_a_lost_connection_fails_its_whole_batch_and_sends_none_again(
    database: Database,
) -> None:
    """The server ends the session mid-batch: every write of the batch fails with the error,
    none is applied (the transaction died with the session) and none is sent a second time."""
    await _add(database, range(1, 2))
    failed: list[int] = []

    async def add(i: int, statement: SQL = ADD) -> None:
        try:
            await database.write(statement, {"id": i, "s": 1.0})
        except DBAPIError:
            failed.append(i)

    async def end_the_batch_session() -> None:
        # Once the batch's own slow statement runs (after the slow writes ahead of it).
        with psycopg.connect(postgres_conninfo(database.url), autocommit=True) as admin:
            with anyio.fail_after(5):
                while not admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND query LIKE '%in the batch%'"
                ).fetchall():
                    await anyio.sleep(0.01)

    async with anyio.create_task_group() as group:
        await _occupy(database, group, 0.3)
        group.start_soon(end_the_batch_session)
        for i in range(200, 210):
            group.start_soon(add, i)
        group.start_soon(add, 1, SLOW_IN_THE_BATCH)  # makes the batch last a second
    assert sorted(failed) == [1, *range(200, 210)]
    assert await _hits(database) == {1: 2}  # the two slow writes before the batch, not the batch's
    assert isinstance(database, PostgresDatabase)
    assert database.group_commit.stats.batches_retried == 0


@POSTGRES_ONLY
async def test_writes_behind_stuck_ones_are_sent_without_waiting_for_them(
    database: Database,
) -> None:
    """Writes under way far longer than any healthy one (a server that stopped answering) are
    stuck, not busy: a write arriving behind them, and those already waiting, go at once."""
    await _add(database, range(1, 2))
    done_at: dict[int, float] = {}

    async def add(i: int) -> None:
        await database.write(ADD, {"id": i})
        done_at[i] = time.monotonic()

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        await _occupy(database, group, 2.0)
        group.start_soon(add, 10)  # waits: the writes under way are only busy yet
        await anyio.sleep(0.7)  # now past STALLED_S
        group.start_soon(add, 11)
    assert done_at[10] - started < 1.5, done_at
    assert done_at[11] - started < 1.5, done_at
    assert set(await _hits(database)) == {1, 10, 11}


async def test_a_batch_that_gets_no_connection_fails_its_writes_instead_of_leaving_them_waiting() -> (
    None
):
    """No connection to be had for a batch (here: the database closing): every write of it is
    answered with the error, none waits forever."""

    async def alone(_: SQL, __: object) -> Result:
        await anyio.sleep(0.1)
        return Result([], 1)

    async def no_connection() -> Any:
        raise RuntimeError("the database is closed")

    async def give_back(_: object) -> None:
        raise AssertionError("nothing was borrowed")

    commit = GroupCommit(alone, no_connection, give_back)
    outcomes: list[str] = []

    async def write() -> None:
        try:
            await commit.write(HIT, {"id": 1})
            outcomes.append("written")
        except RuntimeError:
            outcomes.append("refused")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            for _ in range(commit.concurrency + 3):
                group.start_soon(write)
    assert sorted(outcomes) == ["refused"] * 3 + ["written"] * commit.concurrency
