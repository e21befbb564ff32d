"""What one checkout's journal costs, in CPU, on the current ORM path and on raw SQL.

``python -m bench.experiments.journal_cost [--n 300] [--concurrency 1,32] [--postgres URL]``

No HTTP: each simulated checkout makes only the journal writes (and reads) the orchestrator makes
for a member's three-step checkout, with the same durability: every transition is committed
before the next (simulated) call. CPU is the whole process's (``time.process_time``: every
thread, so aiosqlite's worker threads count). Variants:

- ``orm``: the product's ``Journal`` (SQLAlchemy ORM/Core on aiosqlite or psycopg) making the
  calls the runner and the route make: create, load (drive), running, 3 × (step running, step
  succeeded), completed, load (the answer): 11 transactions.
- ``core-thread``: the same 11 transactions as SQLAlchemy Core statements on the product's
  tables, through the sync engine (pysqlite), each transaction one function run in one dedicated
  thread: SQLAlchemy kept, its asyncio adapter and the ORM session gone.
- ``raw-aiosqlite``: the same 11 transactions as raw SQL on one aiosqlite connection (one writer,
  an ``asyncio.Lock`` around each transaction): every statement is a thread hop.
- ``raw-thread``: the same 11 transactions, each one function run in one dedicated sqlite3 thread
  (one hop per transaction, ``BEGIN IMMEDIATE`` … ``COMMIT`` inside).
- ``raw-thread-merged``: 4 transactions: create (+ running + first step running), then for each
  step "succeeded + next step running" in one commit, the last with "completed"; the answer is
  built from memory. Still every transition committed before the next call.
- ``raw-inline-merged``: the 4 transactions with sqlite3 called directly on the event loop
  (no thread at all; each commit blocks the loop for its duration: a lower bound).
- PostgreSQL (``--postgres``): ``orm`` on psycopg (the product's engine, ``pool_pre_ping`` on),
  ``orm-no-pre-ping`` (the same without the ``SELECT 1`` per pooled checkout), ``raw-psycopg`` (11 transactions, one
  pooled ``AsyncConnection`` each) and ``raw-psycopg-merged`` (4 transactions).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import emit

STEPS = ("warehouse", "rewards", "email")
CUSTOMER = {"id": "c-bench", "email": "bench@example.com", "name": "Bench", "rewards_member": True}
ITEMS = [{"sku": "SKU-001", "quantity": 1, "unit_price": "19.99"}]
OWNER = "bench-host:1:abc"
LEASE_S = 30.0
RESULT = json.dumps({"reservation_id": str(uuid.uuid4()), "status": "reserved"})


def now_text() -> str:
    """How SQLAlchemy's UTCDateTime stores a timestamp on SQLite (naive UTC)."""
    return str(datetime.now(UTC).replace(tzinfo=None))


# --- schema --------------------------------------------------------------------------------


def make_schema(url: str) -> None:
    """The orchestrator's schema, the way the orchestrator makes it (migrations, else create_all)."""
    try:
        from orchestrator.migrations import HISTORY
        from servicekit.migrations import upgrade

        upgrade(url, HISTORY)
    except ImportError:
        from orchestrator.models import OrchestratorTable
        from servicekit.db import create_sync_engine

        engine = create_sync_engine(url)
        OrchestratorTable.metadata.create_all(engine)
        engine.dispose()


# --- the ORM path (the product's Journal) ----------------------------------------------------


async def orm_variant(
    url: str, pre_ping: bool = True
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    from orchestrator.models import Checkout, utcnow
    from orchestrator.store import Journal
    from servicekit.db import create_async_db_engine

    if pre_ping:
        engine = create_async_db_engine(url)
    else:  # the product's PostgreSQL engine less pool_pre_ping (one SELECT 1 per session)
        from sqlalchemy.ext.asyncio import create_async_engine

        from servicekit.db import normalize_url

        engine = create_async_engine(
            normalize_url(url, asynchronous=True), pool_size=10, max_overflow=20
        )
    journal = Journal(engine, owner=OWNER, lease_ttl_s=LEASE_S)

    async def one() -> None:
        checkout = Checkout(
            customer_id=CUSTOMER["id"],
            customer=json.dumps(CUSTOMER),
            items=json.dumps(ITEMS),
            currency="USD",
            total_cents=1999,
            points=19,
            step_order=",".join(STEPS),
            deadline_at=time.time() + 900,
        )
        await journal.create(checkout, list(STEPS))
        cid, token = checkout.id, checkout.lease_token
        await journal.load(cid)
        await journal.record(cid, token, checkout={"status": "running"})
        for name in STEPS:
            pivot = {"past_pivot": True} if name == "email" else None
            await journal.record(
                cid,
                token,
                checkout=pivot,
                step=(name, {"status": "running", "attempts": 1, "started_at": utcnow()}),
                unless_cancelled=True,
            )
            await journal.record(
                cid,
                token,
                step=(
                    name,
                    {
                        "status": "succeeded",
                        "result": RESULT,
                        "http_status": 201,
                        "error": None,
                        "finished_at": utcnow(),
                    },
                ),
            )
        await journal.record(cid, token, checkout={"status": "completed"})
        await journal.load(cid)

    return one, engine.dispose


# --- raw SQL on SQLite ---------------------------------------------------------------------

INSERT_CHECKOUT = (
    "INSERT INTO checkout (id, status, customer_id, customer, items, currency, total_cents, points, "
    "step_order, created_at, updated_at, lease_owner, lease_expires_at, lease_token, deadline_at, "
    "past_pivot, cancel_requested) VALUES (?, ?, ?, ?, ?, 'USD', 1999, 19, ?, ?, ?, ?, ?, 1, ?, 0, 0)"
)
INSERT_STEP = "INSERT INTO step (checkout_id, name, position, status, attempts, started_at) VALUES (?, ?, ?, ?, ?, ?)"
FENCE = (
    "UPDATE checkout SET updated_at = ?, lease_expires_at = ?{extra} "
    "WHERE id = ? AND lease_owner = ? AND lease_token = ?{cancel}"
)
STEP_RUNNING = "UPDATE step SET status = 'running', attempts = 1, started_at = ? WHERE checkout_id = ? AND name = ?"
STEP_DONE = (
    "UPDATE step SET status = 'succeeded', result = ?, http_status = 201, error = NULL, finished_at = ? "
    "WHERE checkout_id = ? AND name = ?"
)
LOAD_CHECKOUT = "SELECT * FROM checkout WHERE id = ?"
LOAD_STEPS = "SELECT * FROM step WHERE checkout_id = ?"


def fence(extra: str = "", cancel: bool = False) -> str:
    return FENCE.format(extra=extra, cancel=" AND cancel_requested = 0" if cancel else "")


def sqlite_connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "foreign_keys=ON",
        "busy_timeout=30000",
    ):
        connection.execute(f"PRAGMA {pragma}")
    return connection


class SyncJournal:
    """Raw sqlite3: every method is one transaction (BEGIN IMMEDIATE … COMMIT)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.db = connection

    def _tx(self, statements: list[tuple[str, tuple[Any, ...]]], fenced_first: bool = True) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for i, (sql, params) in enumerate(statements):
                cursor = self.db.execute(sql, params)
                if i == 0 and fenced_first and cursor.rowcount != 1:
                    raise RuntimeError("lease lost")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def create(self, cid: str, first_running: bool = False) -> None:
        now = now_text()
        status = "running" if first_running else "pending"
        statements = [
            (
                INSERT_CHECKOUT,
                (
                    cid,
                    status,
                    CUSTOMER["id"],
                    json.dumps(CUSTOMER),
                    json.dumps(ITEMS),
                    ",".join(STEPS),
                    now,
                    now,
                    OWNER,
                    time.time() + LEASE_S,
                    time.time() + 900,
                ),
            )
        ]
        for position, name in enumerate(STEPS):
            running = first_running and position == 0
            statements.append(
                (
                    INSERT_STEP,
                    (
                        cid,
                        name,
                        position,
                        "running" if running else "pending",
                        int(running),
                        now if running else None,
                    ),
                )
            )
        self._tx(statements, fenced_first=False)

    def load(self, cid: str) -> tuple[Any, list[Any]]:
        self.db.execute("BEGIN")
        try:
            checkout = self.db.execute(LOAD_CHECKOUT, (cid,)).fetchone()
            steps = self.db.execute(LOAD_STEPS, (cid,)).fetchall()
        finally:
            self.db.execute("COMMIT")
        return checkout, steps

    def record(
        self,
        cid: str,
        extra: str = "",
        extra_params: tuple[Any, ...] = (),
        steps: list[tuple[str, tuple[Any, ...]]] | None = None,
        cancel: bool = False,
    ) -> None:
        statements = [
            (
                fence(extra, cancel),
                (now_text(), time.time() + LEASE_S, *extra_params, cid, OWNER, 1),
            )
        ]
        self._tx(statements + (steps or []))

    # the 11-transaction sequence, and the 4-transaction one
    def eleven(self, cid: str) -> list[Callable[[], Any]]:
        ops: list[Callable[[], Any]] = [lambda: self.create(cid), lambda: self.load(cid)]
        ops.append(lambda: self.record(cid, ", status = ?", ("running",)))
        for name in STEPS:
            pivot = ", past_pivot = 1" if name == "email" else ""
            ops.append(
                lambda name=name, pivot=pivot: self.record(
                    cid, pivot, (), [(STEP_RUNNING, (now_text(), cid, name))], cancel=True
                )
            )
            ops.append(
                lambda name=name: self.record(
                    cid, "", (), [(STEP_DONE, (RESULT, now_text(), cid, name))]
                )
            )
        ops.append(lambda: self.record(cid, ", status = ?, lease_owner = NULL", ("completed",)))
        ops.append(lambda: self.load(cid))
        return ops

    def four(self, cid: str) -> list[Callable[[], Any]]:
        ops: list[Callable[[], Any]] = [lambda: self.create(cid, first_running=True)]
        for i, name in enumerate(STEPS):
            steps = [(STEP_DONE, (RESULT, now_text(), cid, name))]
            if i + 1 < len(STEPS):
                nxt = STEPS[i + 1]
                steps.append((STEP_RUNNING, (now_text(), cid, nxt)))
                pivot = ", past_pivot = 1" if nxt == "email" else ""
                ops.append(
                    lambda steps=steps, pivot=pivot: self.record(cid, pivot, (), steps, cancel=True)
                )
            else:
                ops.append(
                    lambda steps=steps: self.record(
                        cid, ", status = ?, lease_owner = NULL", ("completed",), steps
                    )
                )
        return ops


async def raw_thread_variant(
    path: str, merged: bool
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)  # SQLite has one writer
    journal = SyncJournal(sqlite_connect(path))
    loop = asyncio.get_running_loop()

    async def one() -> None:
        cid = uuid.uuid4().hex
        for op in (journal.four if merged else journal.eleven)(cid):
            await loop.run_in_executor(executor, op)

    async def close() -> None:
        executor.shutdown()
        journal.db.close()

    return one, close


async def raw_inline_variant(
    path: str,
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    journal = SyncJournal(sqlite_connect(path))

    async def one() -> None:
        cid = uuid.uuid4().hex
        for op in journal.four(cid):
            op()
            await asyncio.sleep(0)  # where the HTTP call would be

    async def close() -> None:
        journal.db.close()

    return one, close


async def raw_aiosqlite_variant(
    path: str,
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    import aiosqlite

    db = await aiosqlite.connect(path, isolation_level=None, timeout=30)
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "foreign_keys=ON",
        "busy_timeout=30000",
    ):
        await db.execute(f"PRAGMA {pragma}")
    lock = asyncio.Lock()
    recorder = SyncJournal(sqlite3.connect(":memory:"))  # only to build the statement lists

    async def tx(statements: list[tuple[str, tuple[Any, ...]]], fenced_first: bool = True) -> None:
        async with lock:
            await db.execute("BEGIN IMMEDIATE")
            for i, (sql, params) in enumerate(statements):
                cursor = await db.execute(sql, params)
                if i == 0 and fenced_first and cursor.rowcount != 1:
                    await db.execute("ROLLBACK")
                    raise RuntimeError("lease lost")
            await db.execute("COMMIT")

    async def load(cid: str) -> None:
        async with lock:
            await db.execute("BEGIN")
            await (await db.execute(LOAD_CHECKOUT, (cid,))).fetchone()
            await (await db.execute(LOAD_STEPS, (cid,))).fetchall()
            await db.execute("COMMIT")

    def rec(
        cid: str,
        extra: str = "",
        extra_params: tuple[Any, ...] = (),
        steps: list[tuple[str, tuple[Any, ...]]] | None = None,
        cancel: bool = False,
    ) -> list[tuple[str, tuple[Any, ...]]]:
        return [
            (
                fence(extra, cancel),
                (now_text(), time.time() + LEASE_S, *extra_params, cid, OWNER, 1),
            ),
            *(steps or []),
        ]

    async def one() -> None:
        cid = uuid.uuid4().hex
        now = now_text()
        create = [
            (
                INSERT_CHECKOUT,
                (
                    cid,
                    "pending",
                    CUSTOMER["id"],
                    json.dumps(CUSTOMER),
                    json.dumps(ITEMS),
                    ",".join(STEPS),
                    now,
                    now,
                    OWNER,
                    time.time() + LEASE_S,
                    time.time() + 900,
                ),
            )
        ]
        create += [
            (INSERT_STEP, (cid, name, i, "pending", 0, None)) for i, name in enumerate(STEPS)
        ]
        await tx(create, fenced_first=False)
        await load(cid)
        await tx(rec(cid, ", status = ?", ("running",)))
        for name in STEPS:
            pivot = ", past_pivot = 1" if name == "email" else ""
            await tx(rec(cid, pivot, (), [(STEP_RUNNING, (now_text(), cid, name))], cancel=True))
            await tx(rec(cid, "", (), [(STEP_DONE, (RESULT, now_text(), cid, name))]))
        await tx(rec(cid, ", status = ?, lease_owner = NULL", ("completed",)))
        await load(cid)

    del recorder
    return one, db.close


async def core_thread_variant(
    url: str,
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """SQLAlchemy Core (cached ``update()``/``select()`` on the product's tables) on the sync engine
    the services use, each transaction one function in one dedicated thread: SQLAlchemy kept,
    its asyncio adapter and the ORM session dropped."""
    from sqlalchemy import insert, select, update

    from orchestrator.models import Checkout, Step, utcnow
    from servicekit.db import create_sync_engine

    engine = create_sync_engine(url)
    checkout_t, step_t = Checkout.__table__, Step.__table__  # type: ignore[attr-defined]
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    loop = asyncio.get_running_loop()

    def fenced(
        connection: Any, cid: uuid.UUID, values: dict[str, Any], cancel: bool = False
    ) -> None:
        statement = (
            update(checkout_t)
            .where(
                checkout_t.c.id == cid,
                checkout_t.c.lease_owner == OWNER,
                checkout_t.c.lease_token == 1,
            )
            .values(updated_at=utcnow(), lease_expires_at=time.time() + LEASE_S, **values)
        )
        if cancel:
            statement = statement.where(checkout_t.c.cancel_requested.is_(False))
        if connection.execute(statement).rowcount != 1:
            raise RuntimeError("lease lost")

    def step(connection: Any, cid: uuid.UUID, name: str, values: dict[str, Any]) -> None:
        connection.execute(
            update(step_t)
            .where(step_t.c.checkout_id == cid, step_t.c.name == name)
            .values(**values)
        )

    def create(cid: uuid.UUID) -> None:
        now = utcnow()
        with engine.begin() as connection:
            connection.execute(
                insert(checkout_t).values(
                    id=cid,
                    status="pending",
                    customer_id=CUSTOMER["id"],
                    customer=json.dumps(CUSTOMER),
                    items=json.dumps(ITEMS),
                    currency="USD",
                    total_cents=1999,
                    points=19,
                    step_order=",".join(STEPS),
                    created_at=now,
                    updated_at=now,
                    lease_owner=OWNER,
                    lease_expires_at=time.time() + LEASE_S,
                    lease_token=1,
                    deadline_at=time.time() + 900,
                    past_pivot=False,
                    cancel_requested=False,
                )
            )
            connection.execute(
                insert(step_t),
                [
                    {
                        "checkout_id": cid,
                        "name": n,
                        "position": i,
                        "status": "pending",
                        "attempts": 0,
                    }
                    for i, n in enumerate(STEPS)
                ],
            )

    def load(cid: uuid.UUID) -> None:
        with engine.begin() as connection:
            connection.execute(select(checkout_t).where(checkout_t.c.id == cid)).first()
            connection.execute(select(step_t).where(step_t.c.checkout_id == cid)).all()

    def record(
        cid: uuid.UUID,
        values: dict[str, Any],
        name: str | None = None,
        step_values: dict[str, Any] | None = None,
        cancel: bool = False,
    ) -> None:
        with engine.begin() as connection:
            fenced(connection, cid, values, cancel)
            if name is not None:
                step(connection, cid, name, step_values or {})

    async def one() -> None:
        cid = uuid.uuid4()
        ops: list[Callable[[], Any]] = [
            lambda: create(cid),
            lambda: load(cid),
            lambda: record(cid, {"status": "running"}),
        ]
        for name in STEPS:
            pivot = {"past_pivot": True} if name == "email" else {}
            ops.append(
                lambda name=name, pivot=pivot: record(
                    cid,
                    pivot,
                    name,
                    {"status": "running", "attempts": 1, "started_at": utcnow()},
                    cancel=True,
                )
            )
            ops.append(
                lambda name=name: record(
                    cid,
                    {},
                    name,
                    {
                        "status": "succeeded",
                        "result": RESULT,
                        "http_status": 201,
                        "error": None,
                        "finished_at": utcnow(),
                    },
                )
            )
        ops += [
            lambda: record(cid, {"status": "completed", "lease_owner": None}),
            lambda: load(cid),
        ]
        for op in ops:
            await loop.run_in_executor(executor, op)

    async def close() -> None:
        executor.shutdown()
        engine.dispose()

    return one, close


# --- raw SQL on PostgreSQL -----------------------------------------------------------------


async def psycopg_variant(
    url: str, merged: bool
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """Raw SQL on psycopg's AsyncConnection: a small pool of our own (a queue of connections)."""
    import psycopg

    pg = url.replace("postgresql+psycopg://", "postgresql://")
    pool: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
    for _ in range(10):
        pool.put_nowait(await psycopg.AsyncConnection.connect(pg, autocommit=False))
    p = lambda sql: sql.replace("?", "%s")  # noqa: E731

    async def tx(statements: list[tuple[str, tuple[Any, ...]]], fenced_first: bool = True) -> None:
        connection = await pool.get()
        try:
            async with connection.transaction():
                for i, (sql, params) in enumerate(statements):
                    cursor = await connection.execute(p(sql), params)
                    if i == 0 and fenced_first and cursor.rowcount != 1:
                        raise RuntimeError("lease lost")
        finally:
            pool.put_nowait(connection)

    async def load(cid: str) -> None:
        connection = await pool.get()
        try:
            async with connection.transaction():
                await (await connection.execute(p(LOAD_CHECKOUT), (cid,))).fetchone()
                await (await connection.execute(p(LOAD_STEPS), (cid,))).fetchall()
        finally:
            pool.put_nowait(connection)

    def ts() -> datetime:
        return datetime.now(UTC)

    def rec(
        cid: uuid.UUID,
        extra: str = "",
        extra_params: tuple[Any, ...] = (),
        steps: list[tuple[str, tuple[Any, ...]]] | None = None,
        cancel: bool = False,
    ) -> list[tuple[str, tuple[Any, ...]]]:
        sql = fence(extra.replace("past_pivot = 1", "past_pivot = true"), False)
        if cancel:
            sql += " AND cancel_requested = false"
        return [(sql, (ts(), time.time() + LEASE_S, *extra_params, cid, OWNER, 1)), *(steps or [])]

    insert_checkout = INSERT_CHECKOUT.replace("1, ?, 0, 0)", "1, ?, false, false)")

    async def one() -> None:
        cid = uuid.uuid4()
        now = ts()
        status = "running" if merged else "pending"
        create = [
            (
                insert_checkout,
                (
                    cid,
                    status,
                    CUSTOMER["id"],
                    json.dumps(CUSTOMER),
                    json.dumps(ITEMS),
                    ",".join(STEPS),
                    now,
                    now,
                    OWNER,
                    time.time() + LEASE_S,
                    time.time() + 900,
                ),
            )
        ]
        for i, name in enumerate(STEPS):
            running = merged and i == 0
            create.append(
                (
                    INSERT_STEP,
                    (
                        cid,
                        name,
                        i,
                        "running" if running else "pending",
                        int(running),
                        now if running else None,
                    ),
                )
            )
        await tx(create, fenced_first=False)
        if merged:
            for i, name in enumerate(STEPS):
                steps = [(STEP_DONE, (RESULT, ts(), cid, name))]
                if i + 1 < len(STEPS):
                    steps.append((STEP_RUNNING, (ts(), cid, STEPS[i + 1])))
                    await tx(
                        rec(
                            cid,
                            ", past_pivot = 1" if STEPS[i + 1] == "email" else "",
                            (),
                            steps,
                            cancel=True,
                        )
                    )
                else:
                    await tx(rec(cid, ", status = ?, lease_owner = NULL", ("completed",), steps))
            return
        await load(cid)
        await tx(rec(cid, ", status = ?", ("running",)))
        for name in STEPS:
            pivot = ", past_pivot = 1" if name == "email" else ""
            await tx(rec(cid, pivot, (), [(STEP_RUNNING, (ts(), cid, name))], cancel=True))
            await tx(rec(cid, "", (), [(STEP_DONE, (RESULT, ts(), cid, name))]))
        await tx(rec(cid, ", status = ?, lease_owner = NULL", ("completed",)))
        await load(cid)

    async def close() -> None:
        while not pool.empty():
            await (pool.get_nowait()).close()

    return one, close


# --- driver --------------------------------------------------------------------------------


async def measure(
    one: Callable[[], Awaitable[None]], n: int, concurrency: int
) -> tuple[float, float]:
    """(CPU ms per checkout, checkouts per second) for ``n`` checkouts from ``concurrency`` tasks."""
    for _ in range(20):  # warm-up: caches, statement compilation
        await one()
    left = n
    cpu0, wall0 = time.process_time(), time.perf_counter()

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return cpu * 1000 / n, n / wall


def fresh_postgres(admin_url: str, name: str) -> str:
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    levels = [int(c) for c in args.concurrency.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="journal-cost-"))
    variants: list[tuple[str, str, Callable[[str], Awaitable[Any]]]] = [
        ("SQLite", "orm", lambda url: orm_variant(url)),
        ("SQLite", "core-thread", lambda url: core_thread_variant(url)),
        (
            "SQLite",
            "raw-aiosqlite",
            lambda url: raw_aiosqlite_variant(url.removeprefix("sqlite:///")),
        ),
        (
            "SQLite",
            "raw-thread",
            lambda url: raw_thread_variant(url.removeprefix("sqlite:///"), False),
        ),
        (
            "SQLite",
            "raw-thread-merged",
            lambda url: raw_thread_variant(url.removeprefix("sqlite:///"), True),
        ),
        (
            "SQLite",
            "raw-inline-merged",
            lambda url: raw_inline_variant(url.removeprefix("sqlite:///")),
        ),
    ]
    if args.postgres:
        variants += [
            ("PostgreSQL", "orm", lambda url: orm_variant(url)),
            ("PostgreSQL", "orm-no-pre-ping", lambda url: orm_variant(url, pre_ping=False)),
            ("PostgreSQL", "raw-psycopg", lambda url: psycopg_variant(url, False)),
            ("PostgreSQL", "raw-psycopg-merged", lambda url: psycopg_variant(url, True)),
        ]
    for database, name, build in variants:
        if args.only and name not in args.only.split(","):
            continue
        for concurrency in levels:
            if database == "SQLite":
                url = f"sqlite:///{workdir / f'{name}-{concurrency}.db'}"
            else:
                url = fresh_postgres(args.postgres, "checkout_bench_journal")
            make_schema(url)
            one, close = await build(url)
            try:
                cpu_ms, throughput = await measure(one, args.n, concurrency)
            finally:
                await close()
            row = {
                "database": database,
                "variant": name,
                "concurrency": concurrency,
                "cpu_ms": cpu_ms,
                "per_s": throughput,
            }
            rows.append(row)
            emit(
                f"{database:10} {name:20} C={concurrency:<3} {cpu_ms:6.2f} ms CPU/checkout  "
                f"{throughput:7.0f} checkouts/s"
            )
    shutil.rmtree(workdir, ignore_errors=True)
    return rows


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument(
        "--postgres", help="admin URL, e.g. postgresql://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--only", help="comma-separated variant names")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import uvloop

    rows = uvloop.run(main(args))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    run()
