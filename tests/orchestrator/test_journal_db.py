"""The journal's own database access (``orchestrator.journaldb``): the rows it writes, its thread
on SQLite, cancellation and closing, and connections the PostgreSQL server ended."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from sqlalchemy import text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from orchestrator.journaldb.sqlite import CHECKPOINT_EVERY
from orchestrator.migrations import HISTORY
from orchestrator.models import Checkout, Step
from orchestrator.store import CancelRequestedError, Journal, LeaseLostError
from servicekit.db import CHECKPOINT_WAIT_S, create_async_db_engine
from servicekit.migrations import upgrade

pytestmark = pytest.mark.anyio

STEPS = ["warehouse", "rewards", "email"]
AT = datetime(2026, 3, 4, 5, 6, 7, 0, tzinfo=UTC)  # no microseconds: the format still writes them


def new_checkout(key: str) -> Checkout:
    return Checkout(
        customer_id="c-42",
        customer=json.dumps({"id": "c-42", "rewards_member": True}),
        items=json.dumps([{"sku": "SKU-001", "quantity": 2, "unit_price": "19.99"}]),
        currency="USD",
        total_cents=3998,
        points=39,
        step_order=",".join(STEPS),
        idempotency_key_hash=key,
        request_fingerprint="f" * 64,
        deadline_at=1_900_000_000.5,
        created_at=AT,
        updated_at=AT,
    )


@pytest.fixture
async def engine(database_url: Callable[[str], str]) -> AsyncIterator[AsyncEngine]:
    """An async engine on a new orchestrator database at its latest revision."""
    url = database_url("orchestrator")
    await anyio.to_thread.run_sync(upgrade, url, HISTORY)
    engine = create_async_db_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def raw_rows(engine: AsyncEngine, table: str, checkout_id: uuid.UUID) -> list[dict[str, Any]]:
    """Rows as the driver returns them (no SQLAlchemy types), with SQLite's storage classes."""
    model = Checkout if table == "checkout" else Step
    names = list(model.__table__.columns.keys())  # type: ignore[attr-defined]
    listed = ", ".join(names)
    if engine.dialect.name == "sqlite":
        listed += ", " + ", ".join(f"typeof({name}) AS {name}_storage" for name in names)
    key = "id" if table == "checkout" else "checkout_id"
    stored = checkout_id.hex if engine.dialect.name == "sqlite" else checkout_id
    async with engine.connect() as connection:
        result = await connection.execute(
            text(f"SELECT {listed} FROM {table} WHERE {key} = :id"), {"id": stored}
        )
        rows = [dict(row._mapping) for row in result]
    return sorted(rows, key=lambda row: row.get("position", 0))


def without(rows: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in keys} for row in rows]


async def test_the_journal_writes_the_rows_the_orm_wrote(engine: AsyncEngine) -> None:
    """A checkout created and moved on by the journal is stored exactly as through the ORM session."""
    journal = Journal(engine, owner="replica-a", lease_ttl_s=30)
    by_journal = new_checkout("a" * 64)
    await journal.create(by_journal, STEPS)
    expires = by_journal.lease_expires_at
    by_orm = new_checkout("b" * 64)
    by_orm.lease_owner, by_orm.lease_token, by_orm.lease_expires_at = "replica-a", 1, expires
    async with journal.session() as session:
        session.add(by_orm)
        for position, name in enumerate(STEPS):
            session.add(Step(checkout_id=by_orm.id, name=name, position=position))
        await session.commit()
    step_values = {"status": "succeeded", "attempts": 2, "http_status": 201, "result": "{}"}
    step_values |= {"error": None, "started_at": AT, "finished_at": AT}
    checkout_values = {"past_pivot": True, "error": json.dumps({"kind": "x"})}
    await journal.record(
        by_journal.id, 1, checkout=checkout_values, step=("warehouse", step_values)
    )
    async with journal.session() as session:
        await session.execute(
            update(Checkout)
            .where(col(Checkout.id) == by_orm.id)
            .values(**checkout_values, updated_at=datetime.now(UTC))
        )
        await session.execute(
            update(Step)
            .where(col(Step.checkout_id) == by_orm.id, col(Step.name) == "warehouse")
            .values(**step_values)
        )
        await session.commit()

    differing = ("id", "checkout_id", "idempotency_key_hash", "updated_at", "lease_expires_at")
    journal_checkout = await raw_rows(engine, "checkout", by_journal.id)
    orm_checkout = await raw_rows(engine, "checkout", by_orm.id)
    assert without(journal_checkout, *differing) == without(orm_checkout, *differing)
    journal_steps = await raw_rows(engine, "step", by_journal.id)
    orm_steps = await raw_rows(engine, "step", by_orm.id)
    assert without(journal_steps, *differing) == without(orm_steps, *differing)
    if engine.dialect.name == "sqlite":
        # CHAR(32) UUIDs and naive UTC text with microseconds, as SQLAlchemy's types store them.
        assert journal_checkout[0]["id"] == by_journal.id.hex
        assert journal_checkout[0]["created_at"] == "2026-03-04 05:06:07.000000"
        assert type(journal_checkout[0]["updated_at"]) is type(orm_checkout[0]["updated_at"])
    loaded = await journal.load(by_journal.id)
    assert loaded is not None
    async with journal.session() as session:
        through_orm = await session.get(Checkout, by_journal.id)
    assert through_orm is not None
    assert loaded[0].model_dump() == through_orm.model_dump()


async def test_one_transaction_moves_several_steps_or_none(engine: AsyncEngine) -> None:
    """Steps recorded together are committed together, a step given twice keeps its later values,
    and a write refused by the fence (lease lost, or a cancel pending) writes none of them."""
    journal = Journal(engine, owner="replica-a", lease_ttl_s=30)
    checkout = new_checkout("c" * 64)
    created, pending = await journal.create(checkout, STEPS)
    assert [(s.name, s.position, s.status, s.attempts) for s in pending] == [
        (name, position, "pending", 0) for position, name in enumerate(STEPS)
    ]
    loaded = await journal.load(checkout.id)
    assert loaded is not None
    assert loaded[0].model_dump() == created.model_dump()
    assert sorted((s.model_dump() for s in loaded[1]), key=lambda s: s["position"]) == [
        {**s.model_dump(), "id": loaded_step.id}
        for s, loaded_step in zip(pending, sorted(loaded[1], key=lambda s: s.position), strict=True)
    ]

    succeeded = {"status": "succeeded", "result": '{"id": "r-1"}', "finished_at": AT}
    await journal.record(
        checkout.id,
        1,
        checkout={"status": "running"},
        steps=[("warehouse", {"status": "running", "attempts": 1}), ("warehouse", succeeded)],
        step=("rewards", {"status": "running", "attempts": 1, "started_at": AT}),
    )
    rows = {row["name"]: row for row in await raw_rows(engine, "step", checkout.id)}
    assert (rows["warehouse"]["status"], rows["warehouse"]["attempts"]) == ("succeeded", 1)
    assert rows["warehouse"]["result"] == '{"id": "r-1"}'
    assert (rows["rewards"]["status"], rows["rewards"]["attempts"]) == ("running", 1)
    assert rows["email"]["status"] == "pending"

    assert await journal.request_cancel(checkout.id)
    before = await raw_rows(engine, "step", checkout.id)
    with pytest.raises(CancelRequestedError):
        await journal.record(
            checkout.id,
            1,
            checkout={"past_pivot": True},
            steps=[("rewards", succeeded)],
            step=("email", {"status": "running", "attempts": 1}),
            unless_cancelled=True,
        )
    with pytest.raises(LeaseLostError):
        await journal.record(checkout.id, 2, steps=[("rewards", succeeded)], step=("email", {}))
    assert await raw_rows(engine, "step", checkout.id) == before
    assert (await raw_rows(engine, "checkout", checkout.id))[0]["past_pivot"] in (False, 0)


@pytest.fixture
def sqlite_journal_path(tmp_path: Path) -> Path:
    path = tmp_path / "orchestrator.db"
    upgrade(f"sqlite:///{path}", HISTORY)
    return path


async def test_another_process_holding_the_write_lock_does_not_block_the_event_loop(
    sqlite_journal_path: Path,
) -> None:
    """A journal write waiting for SQLite's lock waits in the journal's thread, not on the loop."""
    engine = create_async_db_engine(f"sqlite:///{sqlite_journal_path}")
    journal = Journal(engine, owner="replica-a", lease_ttl_s=30)
    checkout = new_checkout("c" * 64)
    await journal.create(checkout, STEPS)
    holder = sqlite3.connect(sqlite_journal_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    written = anyio.Event()
    try:
        async with anyio.create_task_group() as group:

            async def record() -> None:
                await journal.record(checkout.id, 1, checkout={"status": "running"})
                written.set()

            group.start_soon(record)
            started = time.monotonic()
            for _ in range(10):
                await anyio.sleep(0.01)
            assert time.monotonic() - started < 1.0
            assert not written.is_set()
            holder.execute("COMMIT")
            with anyio.fail_after(5):
                await written.wait()
    finally:
        holder.close()
        await engine.dispose()


async def test_cancelled_callers_leave_the_journal_usable_and_closable(
    sqlite_journal_path: Path,
) -> None:
    """Callers that stop waiting (one mid-transaction, one queued) neither block the thread nor close."""
    engine = create_async_db_engine(f"sqlite:///{sqlite_journal_path}")
    journal = Journal(engine, owner="replica-a", lease_ttl_s=30)
    checkout = new_checkout("d" * 64)
    await journal.create(checkout, STEPS)
    holder = sqlite3.connect(sqlite_journal_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with anyio.move_on_after(0.1):
            async with anyio.create_task_group() as group:
                group.start_soon(
                    partial(journal.record, checkout.id, 1, checkout={"status": "running"})
                )
                group.start_soon(journal.due_unfinished, 10)
    finally:
        holder.execute("COMMIT")
        holder.close()
    with anyio.fail_after(5):
        assert await journal.due_unfinished(10) == []
        loaded = await journal.load(checkout.id)
    assert loaded is not None
    thread = journal.db._thread  # type: ignore[attr-defined]
    with anyio.fail_after(5):
        await journal.close()
    assert thread is not None
    thread.join(timeout=1)  # it has closed its connection and answered; now it returns
    assert not thread.is_alive()
    # A closed journal opens its database again on its next transaction.
    assert await journal.claim(checkout.id) is None
    await engine.dispose()


async def test_disposing_the_engine_closes_the_journal_thread(sqlite_journal_path: Path) -> None:
    """``engine.dispose()`` (as tests and the app do) also ends the journal's SQLite thread and
    closes the event loop's connection."""
    engine = create_async_db_engine(f"sqlite:///{sqlite_journal_path}")
    journal = Journal(engine, owner="replica-a", lease_ttl_s=30)
    checkout = new_checkout("e" * 64)
    await journal.create(checkout, STEPS)
    holder = sqlite3.connect(sqlite_journal_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # so the next write is handed to the thread
    async with anyio.create_task_group() as group:
        group.start_soon(partial(journal.record, checkout.id, 1, checkout={"status": "running"}))
        await anyio.sleep(0.05)
        holder.execute("COMMIT")
    holder.close()
    database = journal.db
    thread = database._thread  # type: ignore[attr-defined]
    assert thread is not None
    assert database._loop_connection is not None  # type: ignore[attr-defined]
    await engine.dispose()
    assert database.closed
    assert database._loop_connection is None  # type: ignore[attr-defined]
    thread.join(timeout=1)
    assert not thread.is_alive()


async def test_transactions_run_on_the_event_loop_while_the_database_is_free(
    sqlite_journal_path: Path,
) -> None:
    """No thread hand-off while nothing else writes; the loop's commits are checkpointed by the
    thread every CHECKPOINT_EVERY, so the WAL does not grow with the number of transactions."""
    engine = create_async_db_engine(f"sqlite:///{sqlite_journal_path}")
    journal = Journal(engine, owner="replica-a", lease_ttl_s=30)
    checkout = new_checkout("f" * 64)
    await journal.create(checkout, STEPS)
    for attempt in range(1, CHECKPOINT_EVERY // 2):
        await journal.record(checkout.id, 1, step=("warehouse", {"attempts": attempt}))
    loaded = await journal.load(checkout.id)
    assert loaded is not None
    assert {s.name: s.attempts for s in loaded[1]}["warehouse"] == CHECKPOINT_EVERY // 2 - 1
    assert journal.db._thread is None  # type: ignore[attr-defined]

    wal = sqlite_journal_path.with_name(sqlite_journal_path.name + "-wal")
    for attempt in range(CHECKPOINT_EVERY // 2, 10 * CHECKPOINT_EVERY):
        await journal.record(checkout.id, 1, step=("warehouse", {"attempts": attempt}))
        if attempt % CHECKPOINT_EVERY == 1:
            await anyio.sleep(0.05)  # the thread's checkpoint, queued at the 100th, has run
    assert journal.db._thread is not None  # type: ignore[attr-defined]
    # Without checkpoints ~1000 commits would leave a WAL of several thousand pages.
    pages = wal.stat().st_size // 4096
    assert pages < 4 * CHECKPOINT_EVERY, pages
    await engine.dispose()


async def test_transactions_wait_for_a_checkpoint_instead_of_queueing_in_the_thread(
    sqlite_journal_path: Path,
) -> None:
    """While the thread checkpoints, concurrent writers wait for it and then commit on the loop
    again: the thread is handed checkpoints only. (Handed to the thread instead, transactions kept
    it holding the write lock, and every loop transaction that found it busy queued there too.)"""
    engine = create_async_db_engine(f"sqlite:///{sqlite_journal_path}")
    journal = Journal(engine, owner="replica-a", lease_ttl_s=30)
    database = journal.db
    handed: list[str] = []
    submit = database._submit  # type: ignore[attr-defined]

    def counting_submit(work: Any, *args: Any) -> None:
        handed.append(getattr(work, "__name__", repr(work)))
        submit(work, *args)

    database._submit = counting_submit  # type: ignore[attr-defined]
    checkouts = [new_checkout(f"{index:064x}") for index in range(16)]
    for checkout in checkouts:
        await journal.create(checkout, STEPS)

    async def writer(checkout: Checkout) -> None:
        for attempt in range(1, CHECKPOINT_EVERY // 4):
            await journal.record(checkout.id, 1, step=("warehouse", {"attempts": attempt}))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for checkout in checkouts:
                group.start_soon(writer, checkout)
    assert len(handed) >= 3, handed  # 16 × 74 commits: a checkpoint every CHECKPOINT_EVERY
    assert set(handed) == {"restart_checkpoint"}, handed
    loaded = await journal.load(checkouts[-1].id)
    assert loaded is not None
    assert {s.name: s.attempts for s in loaded[1]}["warehouse"] == CHECKPOINT_EVERY // 4 - 1
    await journal.close()
    await engine.dispose()


async def test_a_long_reader_delays_the_journal_only_briefly(sqlite_journal_path: Path) -> None:
    """A checkpoint waits for a reader still holding an old snapshot (a dashboard query, an
    operator's sqlite3 shell) at most CHECKPOINT_WAIT_S, not the 30 s busy timeout: the journal's
    writes queued behind it go on."""
    engine = create_async_db_engine(f"sqlite:///{sqlite_journal_path}")
    journal = Journal(engine, owner="replica-a", lease_ttl_s=30)
    checkout = new_checkout("a1" * 32)
    await journal.create(checkout, STEPS)
    reader = sqlite3.connect(sqlite_journal_path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM checkout").fetchall()  # holds its snapshot
    try:
        started = time.monotonic()
        with anyio.fail_after(10):
            for attempt in range(1, 3 * CHECKPOINT_EVERY):
                await journal.record(checkout.id, 1, step=("warehouse", {"attempts": attempt}))
        assert time.monotonic() - started < 5 * CHECKPOINT_WAIT_S + 2
    finally:
        reader.execute("COMMIT")
        reader.close()
        await engine.dispose()


@pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_connections_the_server_ended_are_replaced_before_use(engine: AsyncEngine) -> None:
    """Without a ping per transaction, a pooled connection the server terminated is never used."""
    journal = Journal(engine, owner="replica-a", lease_ttl_s=30)
    checkout = new_checkout("e" * 64)
    await journal.create(checkout, STEPS)
    admin_url = make_url(engine.url).set(drivername="postgresql")
    with psycopg.connect(admin_url.render_as_string(hide_password=False), autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert ended is not None
    assert ended[0] >= 1
    await anyio.sleep(0.2)
    with anyio.fail_after(10):
        for _ in range(5):
            loaded = await journal.load(checkout.id)
            assert loaded is not None
        await journal.record(checkout.id, 1, checkout={"status": "running"})
    # A caller cancelled mid-statement does not keep the pool from closing.
    with anyio.move_on_after(0.001):
        await journal.due_unfinished(10)
    with anyio.fail_after(10):
        await journal.close()
