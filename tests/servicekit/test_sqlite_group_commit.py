"""servicekit.db.sqlite_group_commit: SQLite's shared transactions of one loop turn, as one.

Many callers at once get batched, each with its own answer and each applied once; a refused
write (matching nothing) is an answer like any other; a failing one fails only its own caller;
a caller cancelled while waiting is never run; a busy database sends each to the worker thread;
each caller returns only once its own transaction is committed; the WAL stays bounded.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy.exc import IntegrityError

from servicekit.db import sqlite as kit_sqlite
from servicekit.db.database import CHECKPOINT_AFTER_CHANGES, Database, SqliteDatabase
from servicekit.db.sqlite_group_commit import MAX_BATCH
from servicekit.db.statements import SQL, Transaction

pytestmark = pytest.mark.anyio

CREATE = "CREATE TABLE item (id INTEGER PRIMARY KEY, hits INTEGER NOT NULL DEFAULT 0)"
ADD = SQL("INSERT INTO item (id) VALUES (:id)")
HIT = SQL("UPDATE item SET hits = hits + 1 WHERE id = :id")
HITS = SQL("SELECT id, hits FROM item ORDER BY id")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "shared.db"
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(CREATE)
        connection.executemany("INSERT INTO item (id) VALUES (?)", [(i,) for i in range(1, 41)])
        connection.commit()
    return path


@pytest.fixture
async def database(path: Path, anyio_backend: str) -> AsyncIterator[SqliteDatabase]:
    """The database, with writers marked as the orchestrator marks its sagas in flight."""
    del anyio_backend  # requested so the fixture runs on the test's event loop
    opened = Database.open(f"sqlite:///{path}")
    assert isinstance(opened, SqliteDatabase)
    with opened.writer(), opened.writer():  # so shared transactions wait for their turn's end
        yield opened
    await opened.close()


def _hits_elsewhere(path: Path) -> dict[int, int]:
    """The rows as another connection reads them: what is committed."""
    with closing(sqlite3.connect(path)) as connection:
        return dict(connection.execute("SELECT id, hits FROM item ORDER BY id").fetchall())


def _hit_unless_missing(item: int) -> Any:
    """A write like the journal's fenced one: it changes the row, or (no such row) nothing."""

    async def work(tx: Transaction) -> bool:
        return await tx.execute(HIT, {"id": item}) == 1

    return work


async def test_concurrent_shared_writes_are_batched_each_applied_once_with_its_own_answer(
    database: SqliteDatabase, path: Path
) -> None:
    """200 callers at once (a fifth matching no row): each gets its own answer, each change is
    committed once, and they went in far fewer transactions than 200, none in the thread."""
    targets = [i % 40 + 1 if i % 5 else 1000 + i for i in range(200)]
    answers: dict[int, bool] = {}

    async def hit(n: int) -> None:
        answers[n] = await database.run(_hit_unless_missing(targets[n]), shared=True)

    async with anyio.create_task_group() as group:
        for n in range(200):
            group.start_soon(hit, n)
    assert answers == {n: targets[n] < 1000 for n in range(200)}
    expected = Counter(t for t in targets if t < 1000)
    assert _hits_elsewhere(path) == {i: expected[i] for i in range(1, 41)}
    assert database.group_commit.shared == 200
    assert (database.on_loop, database.in_thread) == (200, 0)


async def test_write_shares_its_transaction_and_returns_its_own_rowcount(
    database: SqliteDatabase, path: Path
) -> None:
    async def hit(item: int, counts: list[int]) -> None:
        counts.append((await database.write(HIT, {"id": item})).rowcount)

    counts: list[int] = []
    async with anyio.create_task_group() as group:
        for item in (1, 2, 999, 2):
            group.start_soon(hit, item, counts)
    assert sorted(counts) == [0, 1, 1, 1]
    assert {k: v for k, v in _hits_elsewhere(path).items() if v} == {1: 1, 2: 2}
    assert database.group_commit.shared == 4


async def test_a_caller_returns_only_once_its_own_transaction_is_committed(
    database: SqliteDatabase, path: Path
) -> None:
    """Alone or in a batch, what a caller wrote is visible to another connection when its call
    returns: the next call a checkout makes never depends on an uncommitted write."""
    seen: dict[int, int] = {}

    async def hit_then_look(item: int) -> None:
        await database.run(_hit_unless_missing(item), shared=True)
        seen[item] = _hits_elsewhere(path)[item]

    await hit_then_look(1)  # alone
    async with anyio.create_task_group() as group:  # together
        for item in range(2, 12):
            group.start_soon(hit_then_look, item)
    assert seen == dict.fromkeys(range(1, 12), 1)
    assert database.group_commit.shared == 10


async def test_a_failing_transaction_fails_alone_and_the_rest_of_its_batch_is_applied_once(
    database: SqliteDatabase, path: Path
) -> None:
    outcomes: dict[int, str] = {}
    runs: list[int] = []
    order = [*range(100, 110), 5, *range(110, 120)]  # 5 exists already

    async def add_and_hit(item: int) -> None:
        async def work(tx: Transaction) -> None:
            runs.append(item)
            await tx.execute(HIT, {"id": 1})  # written before the failure: undone with it
            await tx.execute(ADD, {"id": item})

        try:
            await database.run(work, shared=True)
            outcomes[item] = "added"
        except IntegrityError:
            outcomes[item] = "taken"

    async with anyio.create_task_group() as group:
        for item in order:
            group.start_soon(add_and_hit, item)
    assert outcomes == dict.fromkeys(range(100, 120), "added") | {5: "taken"}
    committed = _hits_elsewhere(path)
    assert set(committed) == {*range(1, 41), *range(100, 120)}
    assert committed[1] == 20  # the failed caller's first statement was rolled back
    assert database.in_thread == 0
    # The batch ran up to the failing one and was rolled back; then each ran alone.
    assert runs == [*order[: order.index(5) + 1], *order]


async def test_a_caller_cancelled_while_it_waits_is_never_run(
    database: SqliteDatabase, path: Path
) -> None:
    ran: list[int] = []

    def counted(item: int) -> Any:
        async def work(tx: Transaction) -> None:
            ran.append(item)
            await tx.execute(HIT, {"id": item})

        return work

    async with anyio.create_task_group() as group:
        group.start_soon(functools.partial(database.run, counted(1), shared=True))
        await anyio.sleep(0)  # it waits for the end of the loop's turn
        group.cancel_scope.cancel()  # before that turn ends, so before its batch runs
    await database.run(counted(2), shared=True)
    assert ran == [2]
    assert {k: v for k, v in _hits_elsewhere(path).items() if v} == {2: 1}


async def test_shared_writes_wait_on_the_loop_while_another_connection_holds_the_lock(
    database: SqliteDatabase, path: Path
) -> None:
    """The loop cannot take the write lock: the batch is tried again as one after short sleeps,
    the loop free meanwhile, and each write is applied once when the lock is let go."""
    await database.write(HIT, {"id": 40})  # opens the loop's connection
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    done: list[int] = []

    async def hit(item: int) -> None:
        await database.write(HIT, {"id": item})
        done.append(item)

    try:
        async with anyio.create_task_group() as group:
            for item in range(1, 6):
                group.start_soon(hit, item)
            await anyio.sleep(0.2)
            assert done == []  # waiting for the lock, the loop free meanwhile
            holder.execute("COMMIT")
    finally:
        holder.close()
    assert sorted(done) == [1, 2, 3, 4, 5]
    assert {k: v for k, v in _hits_elsewhere(path).items() if v} == dict.fromkeys(
        [1, 2, 3, 4, 5, 40], 1
    )
    # Tried again as one batch on the loop, never handed to the thread.
    assert database.group_commit.busy_retries >= 1
    assert database.in_thread == 0
    assert database.group_commit.shared == 5


async def test_shared_writes_run_alone_once_the_lock_stays_taken_past_the_loops_wait(
    database: SqliteDatabase, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``LOOP_BUSY_WAIT_S`` each runs alone, waiting for the lock in the worker thread."""
    monkeypatch.setattr(kit_sqlite, "LOOP_BUSY_WAIT_S", 0.01)
    await database.write(HIT, {"id": 40})
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    try:
        async with anyio.create_task_group() as group:
            for item in range(1, 4):
                group.start_soon(database.write, HIT, {"id": item})
            await anyio.sleep(0.3)
            holder.execute("COMMIT")
    finally:
        holder.close()
    assert {k: v for k, v in _hits_elsewhere(path).items() if v} == dict.fromkeys([1, 2, 3, 40], 1)
    assert database.in_thread >= 1


async def test_a_batch_is_at_most_max_batch_transactions(database: SqliteDatabase) -> None:
    sizes: list[int] = []
    committed = database.group_commit._committed

    def counted(count: int) -> None:
        sizes.append(count)
        committed(count)

    database.group_commit._committed = counted
    async with anyio.create_task_group() as group:
        for n in range(MAX_BATCH * 2 + 5):
            group.start_soon(functools.partial(database.write, HIT, {"id": n % 40 + 1}))
    assert sizes == [MAX_BATCH, MAX_BATCH, 5]


async def test_shared_writes_checkpoint_the_wal_as_unshared_ones_do(
    database: SqliteDatabase, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch counts its rows towards the next checkpoint, which runs in the thread: the WAL
    does not grow with the number of batches."""
    checkpoints: list[int] = []
    checkpoint = kit_sqlite.restart_checkpoint

    def counted(connection: Any) -> None:
        checkpoints.append(1)
        checkpoint(connection)

    monkeypatch.setattr(kit_sqlite, "restart_checkpoint", counted)
    rounds, each = 30, 50  # 1,500 row changes
    for _ in range(rounds):
        async with anyio.create_task_group() as group:
            for n in range(each):
                group.start_soon(functools.partial(database.write, HIT, {"id": n % 40 + 1}))
        await anyio.sleep(0)  # the checkpoint's task, started after a batch
    with anyio.fail_after(5):
        while len(checkpoints) < rounds * each // CHECKPOINT_AFTER_CHANGES:
            await anyio.sleep(0.01)
    assert len(checkpoints) == rounds * each // CHECKPOINT_AFTER_CHANGES
    assert sum(_hits_elsewhere(path).values()) == rounds * each


async def test_callers_waiting_when_the_database_closes_are_told_it_is_closed(
    database: SqliteDatabase,
) -> None:
    failures: list[str] = []

    async def hit() -> None:
        try:
            await database.write(HIT, {"id": 1})
        except RuntimeError as exc:
            failures.append(str(exc))

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(hit)
        await anyio.sleep(0)  # they are waiting for the batch
        await database.close()
    assert failures == ["the database is closed"] * 3


async def test_with_fewer_than_two_writers_a_shared_transaction_commits_at_once(
    path: Path, anyio_backend: str
) -> None:
    """Nobody could share its turn (one saga in flight, or none marked): it is committed at once,
    with no wait for the end of the loop's turn, as an unshared transaction."""
    turns: list[str] = []

    async def other() -> None:
        turns.append("the loop's next turn")

    del anyio_backend  # requested so the test runs on its event loop

    lone = Database.open(f"sqlite:///{path}")
    assert isinstance(lone, SqliteDatabase)
    try:
        with lone.writer():  # one saga in flight
            async with anyio.create_task_group() as group:
                group.start_soon(other)
                await lone.write(HIT, {"id": 1})
                turns.append("committed")
        assert turns == ["committed", "the loop's next turn"]
        assert _hits_elsewhere(path)[1] == 1
        assert lone.group_commit.shared == 0
    finally:
        await lone.close()
