"""servicekit.sql and apply_once: plain SQL that stores what the ORM stores, once per key."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, select

from servicekit.db import UTCDateTime, create_sync_engine
from servicekit.idempotency import (
    IdempotencyKeyReusedError,
    IdempotencyRecordBase,
    StoredResponse,
    apply_once,
    fingerprint,
)
from servicekit.problems import ProblemError
from servicekit.sql import SQL, Transaction, Transactions


class SqlKitTable(SQLModel, registry=registry()):
    """Tables of these tests only."""


class SqlRecord(IdempotencyRecordBase, SqlKitTable, table=True):
    __tablename__ = "sqlkit_idempotency_record"


class Thing(SqlKitTable, table=True):
    __tablename__ = "sqlkit_thing"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    label: str
    at: datetime = Field(sa_type=UTCDateTime)
    until: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RefusedError(ProblemError):
    status = 409
    title = "Refused"


INSERT = SQL("INSERT INTO sqlkit_thing (id, label, at, until) VALUES (:id, :label, :at, :until)")
LABELS = SQL("SELECT label FROM sqlkit_thing ORDER BY label")
TABLE = "sqlkit_idempotency_record"


@pytest.fixture
def engine(database_url: Callable[[str], str]) -> Iterator[Engine]:
    """An engine on a fresh database holding the test tables."""
    engine = create_sync_engine(database_url("sqlkit"))
    SqlKitTable.metadata.create_all(engine)
    yield engine
    engine.dispose()


def _insert(tx: Transaction, label: str, at: datetime | None = None) -> None:
    when = at or datetime.now(UTC)
    values = {"id": tx.uuid(uuid.uuid4()), "label": label, "at": tx.timestamp(when), "until": None}
    tx.execute(INSERT, values)


def _labels(engine: Engine) -> list[str]:
    return Transactions(engine).call(lambda tx: [row[0] for row in tx.all(LABELS)])


def test_parameters_are_written_once_for_both_drivers() -> None:
    """``:name`` becomes psycopg's ``%(name)s``; casts and literals are left alone."""
    statement = SQL("SELECT :a, x::text, ':b' FROM t WHERE id = :id_2")
    assert statement.sqlite == "SELECT :a, x::text, ':b' FROM t WHERE id = :id_2"
    assert statement.postgres == "SELECT %(a)s, x::text, ':b' FROM t WHERE id = %(id_2)s"
    with pytest.raises(ValueError, match="%"):
        SQL("SELECT 1 % 2")


def test_values_are_stored_as_the_orm_stores_them(engine: Engine) -> None:
    """A uuid and UTC timestamps written in plain SQL read back through the ORM, and vice versa."""
    thing_id = uuid.uuid4()
    at = datetime(2026, 11, 22, 1, 2, 3, tzinfo=UTC)  # no microseconds: still the same text
    until = datetime(2026, 11, 22, 1, 2, 3, 456789, tzinfo=UTC)

    def write(tx: Transaction) -> None:
        values = {
            "id": tx.uuid(thing_id),
            "label": "plain",
            "at": tx.timestamp(at),
            "until": tx.timestamp(until),
        }
        tx.execute(INSERT, values)
        tx.commit()

    Transactions(engine).call(write)
    with Session(engine) as session:
        thing = session.get(Thing, thing_id)
        assert thing is not None
        assert (thing.label, thing.at, thing.until) == ("plain", at, until)
        session.add(Thing(label="orm", at=until))
        session.commit()
        orm_id = session.exec(select(Thing.id).where(Thing.label == "orm")).one()

    def read(tx: Transaction) -> Any:
        return tx.one(SQL("SELECT id, at, until FROM sqlkit_thing WHERE label = 'orm'"))

    row = Transactions(engine).call(read)
    assert Transaction.uuid_of(row[0]) == orm_id
    assert Transaction.timestamp_of(row[1]) == until
    assert Transaction.optional_timestamp_of(row[2]) is None


def test_uncommitted_work_is_rolled_back(engine: Engine) -> None:
    """What a transaction function does not commit is not kept."""
    Transactions(engine).call(lambda tx: _insert(tx, "dropped"))
    assert _labels(engine) == []


def _apply(
    engine: Engine, key: str | None, payload: Any, label: str, *, refuse: bool = False
) -> StoredResponse:
    def work(tx: Transaction) -> StoredResponse:
        def action() -> tuple[int, Any]:
            _insert(tx, label)
            if refuse:
                raise RefusedError("no")
            return 201, {"label": label, "payload": payload}

        digest = fingerprint(payload)
        return apply_once(
            tx, scope="POST /things", key=key, digest=digest, action=action, table=TABLE
        )

    return Transactions(engine).call(work)


def test_apply_once_applies_a_keyed_request_once(engine: Engine) -> None:
    """A repeat with the same key and meaning replays the first answer and applies nothing."""
    first = _apply(engine, "k-1", {"n": 1}, "first")
    again = _apply(engine, "k-1", {"n": 1}, "second")

    assert first == StoredResponse(201, {"label": "first", "payload": {"n": 1}})
    assert again == StoredResponse(201, {"label": "first", "payload": {"n": 1}}, replayed=True)
    assert _labels(engine) == ["first"]
    with Session(engine) as session:  # the record reads back through the ORM model
        record = session.exec(select(SqlRecord)).one()
        assert (record.scope, record.status_code) == ("POST /things", 201)
        assert record.key != "k-1"  # stored hashed
        assert record.created_at.tzinfo is not None


def test_apply_once_refuses_a_key_reused_with_another_meaning(engine: Engine) -> None:
    """The same key with a different payload raises a 422 error and applies nothing."""
    _apply(engine, "k-1", {"n": 1}, "first")
    with pytest.raises(IdempotencyKeyReusedError):
        _apply(engine, "k-1", {"n": 2}, "second")
    assert _labels(engine) == ["first"]


def test_apply_once_records_no_refusal(engine: Engine) -> None:
    """A refusal rolls its effect back and is not recorded: the same key may be tried again."""
    with pytest.raises(RefusedError):
        _apply(engine, "k-1", {"n": 1}, "refused", refuse=True)
    assert _labels(engine) == []
    assert _apply(engine, "k-1", {"n": 1}, "applied").replayed is False
    assert _labels(engine) == ["applied"]


def test_apply_once_scopes_keys(engine: Engine) -> None:
    """One key under two scopes names two requests."""
    _apply(engine, "k-1", {"n": 1}, "first")

    def other(tx: Transaction) -> StoredResponse:
        return apply_once(
            tx,
            scope="POST /other",
            key="k-1",
            digest=fingerprint({"n": 1}),
            action=lambda: (200, {"other": True}),
            table=TABLE,
        )

    assert Transactions(engine).call(other) == StoredResponse(200, {"other": True})


def test_apply_once_rolls_back_an_unexpected_error(engine: Engine) -> None:
    """An action failing unexpectedly leaves no effect and no record."""

    def fail(tx: Transaction) -> StoredResponse:
        def action() -> tuple[int, Any]:
            _insert(tx, "half-done")
            raise RuntimeError("boom")

        return apply_once(
            tx, scope="POST /things", key="k-1", digest=fingerprint({}), action=action, table=TABLE
        )

    with pytest.raises(RuntimeError):
        Transactions(engine).call(fail)
    assert _labels(engine) == []
    with Session(engine) as session:
        assert session.exec(select(SqlRecord)).all() == []


def test_apply_once_without_key_runs_every_time(engine: Engine) -> None:
    """Without a key every request applies."""
    _apply(engine, None, {"n": 1}, "a")
    _apply(engine, None, {"n": 1}, "b")
    assert _labels(engine) == ["a", "b"]


@pytest.mark.anyio
async def test_run_on_sqlite_uses_the_event_loop_unless_the_write_lock_is_taken(
    tmp_path: Any,
) -> None:
    """On SQLite a free database is written from the event loop; a locked one from a worker
    thread that waits for the lock, and the work is applied once."""
    path = tmp_path / "kit.db"
    engine = create_sync_engine(f"sqlite:///{path}")
    SqlKitTable.metadata.create_all(engine)
    transactions = Transactions(engine)
    threads: list[threading.Thread] = []
    done: list[str] = []

    def work(tx: Transaction) -> str:
        threads.append(threading.current_thread())
        _insert(tx, f"w{len(done)}")
        tx.commit()
        done.append("x")
        return "done"

    try:
        assert await transactions.run(work) == "done"
        assert threads == [threading.current_thread()]

        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock for a while

        async def release() -> None:
            await anyio.sleep(0.3)
            holder.rollback()

        threads.clear()
        async with anyio.create_task_group() as group:
            group.start_soon(release)
            with anyio.fail_after(10):
                assert await transactions.run(work) == "done"
        holder.close()
        assert threads[0] is threading.current_thread()
        assert threads[-1] is not threading.current_thread()
        assert len(threads) == 2
        assert _labels(engine) == ["w0", "w1"]
    finally:
        transactions.close()
        engine.dispose()


@pytest.mark.anyio
async def test_wal_stays_bounded_when_the_event_loop_writes(tmp_path: Any) -> None:
    """The event loop's connection leaves checkpoints to worker threads, which keep the WAL small,
    also while other requests go on writing during a checkpoint (a PASSIVE one then never lets
    the WAL start over: it grew to ~3,000 pages over these 1,200 transactions)."""
    path = tmp_path / "kit.db"
    engine = create_sync_engine(f"sqlite:///{path}")
    SqlKitTable.metadata.create_all(engine)
    transactions = Transactions(engine)

    def work(tx: Transaction) -> None:
        _insert(tx, "x" * 2000)
        tx.commit()

    async def writer() -> None:
        for _ in range(75):
            await transactions.run(work)
            await anyio.sleep(0)  # let the other writers in, as concurrent requests do

    try:
        for _ in range(600):
            await transactions.run(work)
        wal = path.with_name(path.name + "-wal")
        # Never checkpointed, these 600 transactions leave a WAL of about 10 MB.
        assert wal.stat().st_size < 3_000_000
        in_a_thread = 0
        call = transactions.call

        def counted_call(work: Any) -> Any:
            nonlocal in_a_thread
            in_a_thread += 1
            return call(work)

        transactions.call = counted_call  # type: ignore[method-assign]
        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(writer)
        assert wal.stat().st_size < 3_000_000
        assert len(_labels(engine)) == 1200
        # Writers meanwhile waited for each checkpoint and went on on the loop; handed to the
        # worker thread instead, they kept it holding the write lock, and more followed them there.
        assert in_a_thread == 0
    finally:
        transactions.close()
        engine.dispose()
