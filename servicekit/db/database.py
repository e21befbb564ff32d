"""``Database``: where a service's transactions run, on SQLite or PostgreSQL.

Every service (and the orchestrator's journal) writes its hot path as transaction functions:
``async def work(tx: Transaction) -> T`` that only run statements (``servicekit.db.statements``).
``await database.run(work)`` commits when ``work`` returns and rolls back when it raises, so
committing lives here and nowhere else. ``work`` may be started again from its beginning (on
SQLite, after finding the database busy), so it must do nothing but its statements.

Why not an ORM session: a service's mutating request is a handful of statements, and through a
session it cost several milliseconds of CPU (compilation, unit of work, identity map, thread
hand-offs); the journal measured ~0.1 ms per transaction against ~1.5-2 ms
(``bench/experiments``). The models stay the schema; only the statements are plain.

Where a transaction runs:

- **PostgreSQL**: on the event loop, on a connection of a ``psycopg_pool`` pool in autocommit
  mode; ``run`` begins and ends the transaction, and ``execute`` (one statement) is one round
  trip; ``write`` (one statement that writes) may share both with other callers' writes under
  load (``servicekit.db.group_commit``). Instead of a ``SELECT 1`` before each borrowed
  connection, the borrow looks whether the idle connection's socket has anything to read, which
  costs no round trip: a server that ended the session has said so or closed the socket, and
  only then is the connection pinged.
- **SQLite**: on the event loop itself when the database is free, which is nearly always: with
  WAL and ``synchronous=NORMAL`` a transaction takes tens of microseconds, less than handing it
  to a thread and being woken with its result. The loop's connection has a busy timeout of zero:
  when another connection holds the write lock (another process, or this database's thread),
  SQLite says BUSY at once, the attempt is rolled back, and ``work`` is tried again on the loop
  after a short sleep (0.2 ms, doubling to 2 ms, ``sqlite.busy_delays``), the loop serving others
  meanwhile; only after a second of that does it run in a worker thread, one at a time, on a
  connection that waits for the lock. Once a transaction holds the
  write lock a WAL database does not wait again before its commit, so the loop never waits.
- **Group commit (SQLite)**: ``run(work, shared=True)`` and ``write`` wait for the end of the
  loop's turn, and the shared transactions of that turn are committed as one
  (``servicekit.db.sqlite_group_commit``); each caller still returns only once its own is
  committed.
- **Checkpoints (SQLite)**: the loop's connection does not copy the WAL into the database file
  by itself (copying pages and syncing the file would stall the loop). After about as many row
  changes as SQLite would checkpoint on its own, the worker thread makes a RESTART checkpoint,
  and the loop's transactions wait for it to end, then run on the loop again. They are not handed
  to the thread meanwhile: at 100 % CPU the loop holds the GIL, the thread drains slowly, and
  every transaction that found it holding the write lock would join its queue (that cost 0.8 ms
  of CPU per checkout at 32 concurrent ones, and the services twice their CPU per request).
"""

from __future__ import annotations

import asyncio
import select
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

import anyio
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.exc import DBAPIError

from servicekit.db import sqlite
from servicekit.db.group_commit import GroupCommit
from servicekit.db.sqlite_group_commit import SqliteGroupCommit, complete
from servicekit.db.statements import (
    READ,
    SQL,
    STATEMENT,
    WRITE,
    Params,
    PostgresTransaction,
    Result,
    SqliteTransaction,
    Transaction,
)
from servicekit.db.urls import is_sqlite, postgres_conninfo

T = TypeVar("T")
Work = Callable[[Transaction], Coroutine[Any, Any, T]]

# Rows changed on the loop's connection between checkpoints: a row is a page or two, and SQLite
# checkpoints on its own at 1000 pages (a journal transaction changes ~2-3 rows, a service's ~5).
CHECKPOINT_AFTER_CHANGES = 750
POOL_MIN_SIZE = 2
POOL_MAX_SIZE = 20
# How long a transaction waits for a PostgreSQL connection (the pool reconnects meanwhile).
POOL_TIMEOUT_S = 10.0
# How long a connection may go from transaction to transaction without passing through the
# pool (``PostgresDatabase._keep``): then the pool sees it again, and applies its lifetime and
# idle limits to it.
KEEP_FOR_S = 60.0
_PING = SQL("SELECT 1")
# libpq's network timeouts, unless the DATABASE_URL sets its own (``?tcp_user_timeout=…``).
# Without them, a connection to a server that became unreachable (a partition, a host gone)
# waits for TCP to give up, 15 minutes on Linux: every transaction on it hangs that long
# instead of failing, and the request answering 503 (nothing kept). With them, unacknowledged
# bytes fail the connection after 10 s, keepalives find an idle dead one in ~11 s, and a new
# connection gives up after 5 s.
# The server's side too (``options``): a client cut off in the middle of a transaction (a batch
# of the group commit whose COMMIT never arrived) would leave its session open, holding its
# rows' locks until the server's TCP noticed, two hours by default; every replica claiming those
# checkouts would wait on them. The server's keepalives end such a session within ~11 s, and
# one idle in a transaction after 10 s (no transaction of the suite waits between statements).
CONNECTION_TIMEOUTS = {
    "connect_timeout": "5",
    "tcp_user_timeout": "10000",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "options": (
        "-c idle_in_transaction_session_timeout=10000 -c tcp_user_timeout=10000"
        " -c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3"
    ),
}


class Database:
    """One service's database; ``Database.open(url)`` picks SQLite or PostgreSQL."""

    postgres: bool = False

    def __init__(self, url: str) -> None:
        self.url = url
        self.closed = False

    @staticmethod
    def open(url: str, *, name: str = "servicekit") -> Database:
        """The database ``url`` names (connections are made on first use). ``name``: the pool's."""
        return SqliteDatabase(url) if is_sqlite(url) else PostgresDatabase(url, name=name)

    async def run(self, work: Work[T], *, read_only: bool = False, shared: bool = False) -> T:
        """``work(transaction)`` as one transaction: committed if it returns, rolled back if not.

        ``read_only``: a transaction that only reads, on one snapshot, taking no write lock.
        ``shared``: on SQLite, a write that may be committed in one transaction with the other
        shared ones of the same moment (``servicekit.db.sqlite_group_commit``), so ``work``
        must write nothing it would not write alone; on PostgreSQL it is a transaction of its
        own (there, single statements are shared: ``write``).
        """
        raise NotImplementedError

    async def execute(self, statement: SQL, params: Params | None = None) -> Result:
        """One statement as a transaction of its own (on PostgreSQL: one round trip)."""
        return await self._run(_one_statement(statement, params), STATEMENT)

    async def write(self, statement: SQL, params: Params | None = None) -> Result:
        """One statement that writes, committed when this returns, as ``execute``; it may
        share its transaction with other callers' writes under load (on PostgreSQL its round
        trip too: ``servicekit.db.group_commit``; on SQLite ``run(shared=True)``), so use it
        only for a statement whose effect stands on its own."""
        return await self.execute(statement, params)

    def writer(self) -> AbstractContextManager[None]:
        """Mark a task that writes (``write``, ``run(shared=True)``) while others may: on SQLite
        a shared transaction waits to be committed with others only while two or more tasks
        are marked, since alone nothing could share it (on PostgreSQL, writes under way are
        the sign of load, and this marks nothing)."""
        return nullcontext()

    async def _run(self, work: Work[T], kind: str) -> T:
        raise NotImplementedError

    async def ping(self) -> None:
        """Raise unless the database answers a query (``/readyz``)."""
        await self.execute(_PING)

    async def close(self) -> None:
        """Close the connections; the database is not used again."""
        raise NotImplementedError


def _one_statement(statement: SQL, params: Params | None) -> Work[Result]:
    """The transaction function of a single statement."""

    async def work(transaction: Transaction) -> Result:
        return await transaction.result(statement, params)

    return work


class SqliteDatabase(Database):
    """Transactions on one SQLite file: on the event loop, or in a worker thread when busy."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._loop_connection: sqlite3.Connection | None = None
        self._loop_thread: int | None = None
        self._thread_connection: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._changes_at_checkpoint = 0
        self._checkpoint_ended: anyio.Event | None = None  # set while a checkpoint runs
        self._checkpointing: asyncio.Task[None] | None = None  # one started after a batch
        #: how many transactions ran on the loop, and in the thread (for tests and benchmarks)
        self.on_loop = 0
        self.in_thread = 0
        #: tries again on the loop after finding the database busy (for tests and benchmarks)
        self.busy_retries = 0
        self.group_commit = SqliteGroupCommit(
            self._batch_transaction, self._run_write, self._after_batch
        )

    async def run(self, work: Work[T], *, read_only: bool = False, shared: bool = False) -> T:
        if shared and not read_only:
            result: T = await self.group_commit.run(work)
            return result
        return await self._run(work, READ if read_only else WRITE)

    async def write(self, statement: SQL, params: Params | None = None) -> Result:
        return await self.run(_one_statement(statement, params), shared=True)

    def writer(self) -> AbstractContextManager[None]:
        return self.group_commit.writer()

    async def _run_write(self, work: Work[T]) -> T:
        return await self._run(work, WRITE)

    async def _run(self, work: Work[T], kind: str) -> T:
        busy = sqlite.busy_delays()
        while True:
            if self.closed:
                raise RuntimeError("the database is closed")
            # A commit on the loop during a checkpoint would keep it from starting the WAL over:
            # wait for it, and for the next one if another waiter's commit has started one.
            while self._checkpoint_ended is not None:
                await self._checkpoint_ended.wait()
            if self.closed:  # closed while this caller waited for the checkpoint
                raise RuntimeError("the database is closed")
            done, result = self._on_loop(work, kind)
            if done:
                self.on_loop += 1
                connection = self._loop_connection
                assert connection is not None
                if self._checkpoint_due(connection):
                    await self._checkpoint()
                return result  # type: ignore[return-value]
            # Busy: another connection holds the write lock. Try again on the loop shortly
            # (``sqlite.busy_delays``), unless the loop's connection is another thread's.
            delay = next(busy, None) if self._loop_thread == threading.get_ident() else None
            if delay is None:
                break
            self.busy_retries += 1
            await asyncio.sleep(delay)
        self.in_thread += 1
        return await anyio.to_thread.run_sync(
            self._in_thread, work, kind, limiter=self._thread_limiter()
        )

    def _checkpoint_due(self, connection: sqlite3.Connection) -> bool:
        """Whether enough rows changed for a checkpoint (and, if so, counting starts again)."""
        if connection.total_changes - self._changes_at_checkpoint < CHECKPOINT_AFTER_CHANGES:
            return False
        self._changes_at_checkpoint = connection.total_changes
        return True

    def _thread_limiter(self) -> anyio.CapacityLimiter:
        # Made on first use, in a task: anyio needs to know the event loop's library.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        return self._limiter

    def _batch_transaction(self) -> SqliteTransaction | None:
        """A write transaction on the loop's connection for a batch, or None if not now."""
        if self.closed or self._checkpoint_ended is not None:
            return None  # each runs alone: those wait for the checkpoint, or fail as closed
        connection = self._loop_connection
        if connection is None:
            try:
                connection = self._open_loop_connection()
            except sqlite3.Error:
                return None
        elif self._loop_thread != threading.get_ident():
            return None
        return SqliteTransaction(connection, WRITE)

    def _after_batch(self, count: int) -> None:
        self.on_loop += count
        connection = self._loop_connection
        if connection is not None and self._checkpoint_due(connection):
            # In a task of its own: a batch is committed from a callback, not a task.
            self._checkpointing = asyncio.get_running_loop().create_task(self._checkpoint())

    def _on_loop(self, work: Work[T], kind: str) -> tuple[bool, T | None]:
        """Run ``work`` here and now, unless the database is busy: (done, its result)."""
        connection = self._loop_connection
        if connection is None:
            try:
                connection = self._open_loop_connection()
            except sqlite3.OperationalError as exc:
                if not sqlite.is_busy(exc):
                    raise
                return False, None
        elif self._loop_thread != threading.get_ident():
            return False, None  # another thread's event loop: this connection is not its own
        transaction = SqliteTransaction(connection, kind)
        try:
            result: T = complete(work(transaction))
            transaction.end(commit=True)
            return True, result
        except DBAPIError as exc:
            if exc.orig is None or not sqlite.is_busy(
                exc.orig
            ):  # BUSY comes before anything is written
                raise
            return False, None
        finally:
            transaction.end(commit=False)

    def _open_loop_connection(self) -> sqlite3.Connection:
        # Closable from any thread, used only from this one (``_on_loop``).
        connection = sqlite.connect(self.url, busy_timeout_s=0, check_same_thread=False)
        connection.execute("PRAGMA wal_autocheckpoint = 0")  # see ``restart_checkpoint``
        self._loop_connection, self._loop_thread = connection, threading.get_ident()
        self._changes_at_checkpoint = connection.total_changes
        return connection

    def _thread_side(self) -> sqlite3.Connection:
        # One worker thread at a time (the limiter), but not always the same thread.
        if self._thread_connection is None:
            if self.closed:  # queued before ``close``: no connection that nobody would close
                raise RuntimeError("the database is closed")
            self._thread_connection = sqlite.connect(self.url, check_same_thread=False)
        return self._thread_connection

    def _in_thread(self, work: Work[T], kind: str) -> T:
        transaction = SqliteTransaction(self._thread_side(), kind)
        try:
            result: T = complete(work(transaction))
            transaction.end(commit=True)
            return result
        finally:
            transaction.end(commit=False)

    async def _checkpoint(self) -> None:
        if self.closed:  # one started after a batch, run after ``close``
            return
        ended = self._checkpoint_ended = anyio.Event()
        try:
            await anyio.to_thread.run_sync(
                lambda: sqlite.restart_checkpoint(self._thread_side()),
                limiter=self._thread_limiter(),
            )
        except sqlite3.Error:
            pass  # a failed checkpoint is tried again at the next one
        finally:
            self._checkpoint_ended = None
            ended.set()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        # Nothing runs on the loop's connection now: its transactions never span an await.
        if self._loop_connection is not None:
            self._loop_connection.close()
            self._loop_connection = None
        if self._limiter is not None:
            # After the thread's transactions queued before this one, whichever connection
            # they left open.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._close_thread_side, limiter=self._limiter)

    def _close_thread_side(self) -> None:
        connection, self._thread_connection = self._thread_connection, None
        if connection is not None:
            connection.close()


def _has_input(connection: psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle connection's socket is readable: the server said or closed something."""
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


async def _is_alive(connection: psycopg.AsyncConnection[Any]) -> bool:
    """Whether a borrowed connection still works: a ping only for one the server may have ended."""
    if not (connection.closed or _has_input(connection)):
        return True
    try:
        await AsyncConnectionPool.check_connection(connection)
    except Exception:
        return False
    return True


class PostgresDatabase(Database):
    """Transactions on PostgreSQL, through a pool of psycopg asyncio connections."""

    postgres = True

    def __init__(self, url: str, *, name: str) -> None:
        super().__init__(url)
        given = conninfo_to_dict(postgres_conninfo(url))
        self.conninfo = make_conninfo("", **(CONNECTION_TIMEOUTS | given))
        self.name = name
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Connections out of the pool: until when each may skip it (``_keep``), and its cursor.
        self._out: dict[psycopg.AsyncConnection[Any], tuple[float, psycopg.AsyncCursor[Any]]] = {}
        self._kept: list[psycopg.AsyncConnection[Any]] = []  # idle, last in first out
        # Transactions waiting in the pool's ``getconn`` (all connections out): a connection
        # done with goes back to the pool then, which hands it to the first of them. Kept, it
        # would wait for a transaction arriving later, and those waiting would time out.
        self._waiting_for_pool = 0
        self.group_commit = GroupCommit(self.execute, self._borrow_any, self._give_back)

    async def _connected(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        if self.closed:
            raise RuntimeError("the database is closed")
        pool = self._pool
        if pool is not None:
            if asyncio.get_running_loop() is not self._loop:
                raise RuntimeError("this PostgreSQL pool belongs to another event loop")
            return pool
        pool = AsyncConnectionPool(
            self.conninfo,
            kwargs={"autocommit": True},
            min_size=POOL_MIN_SIZE,
            max_size=POOL_MAX_SIZE,
            timeout=POOL_TIMEOUT_S,
            name=self.name,
            open=False,
        )
        await pool.open()
        if self._pool is not None:  # another task opened one meanwhile
            await pool.close()
            return self._pool
        self._pool, self._loop = pool, asyncio.get_running_loop()
        return pool

    async def run(self, work: Work[T], *, read_only: bool = False, shared: bool = False) -> T:
        del shared  # on PostgreSQL, single statements are what is shared (``write``)
        return await self._run(work, READ if read_only else WRITE)

    async def _borrow(
        self, pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]]
    ) -> psycopg.AsyncConnection[Any]:
        """A pooled connection the server has not ended, within POOL_TIMEOUT_S.

        Checked here rather than by the pool's ``check``: the pool backs off 1 s, 2 s, 4 s…
        between failed checks, so after a server restart every dead connection in the pool
        would cost the next transaction seconds. A dead one is closed and given back (the pool
        then opens a replacement) and the next is borrowed at once.
        """
        deadline = time.monotonic() + POOL_TIMEOUT_S
        while True:
            if self._kept and self._expired(self._kept[0]):
                # The longest idle: the pool applies its lifetime and idle limits again.
                await self._to_pool(self._kept.pop(0))
                continue
            if self._kept:
                connection = self._kept.pop()
            else:
                self._waiting_for_pool += 1
                try:
                    connection = await pool.getconn(timeout=max(0.0, deadline - time.monotonic()))
                finally:
                    self._waiting_for_pool -= 1
                self._out[connection] = (time.monotonic() + KEEP_FOR_S, connection.cursor())
            if await _is_alive(connection):
                return connection
            await connection.close()
            await self._to_pool(connection)

    def _keep(self, connection: psycopg.AsyncConnection[Any]) -> bool:
        """Keep a connection a transaction is done with for the next one, if it is idle.

        Instead of giving it back to the pool: the pool's ``getconn`` and ``putconn`` (its lock,
        statistics, logging and checks) cost ~30 µs per transaction, a third of a single
        statement's CPU. Not when it is left in a transaction or broken, nor once KEEP_FOR_S
        has passed since the pool gave it out: then it goes back to the pool, which resets,
        replaces or expires it as it would any other. Nor while transactions wait in the pool
        for a connection: the pool hands it to the first of them.
        """
        if (
            not self.closed
            and not self._waiting_for_pool
            and connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            and not self._expired(connection)
        ):
            self._kept.append(connection)
            return True
        return False

    def _expired(self, connection: psycopg.AsyncConnection[Any]) -> bool:
        return time.monotonic() >= self._out[connection][0]

    async def _to_pool(self, connection: psycopg.AsyncConnection[Any]) -> None:
        del self._out[connection]
        assert self._pool is not None
        await self._pool.putconn(connection)

    async def write(self, statement: SQL, params: Params | None = None) -> Result:
        return await self.group_commit.write(statement, params)

    async def _borrow_any(self) -> psycopg.AsyncConnection[Any]:
        return await self._borrow(await self._connected())

    async def _give_back(self, connection: psycopg.AsyncConnection[Any]) -> None:
        if not self._keep(connection):
            await self._to_pool(connection)

    async def _run(self, work: Work[T], kind: str) -> T:
        connection = await self._borrow(await self._connected())
        transaction = PostgresTransaction(connection, kind, self._out[connection][1])
        try:
            result = await work(transaction)
            await transaction.end(commit=True)
        except BaseException:
            # Even when the caller is being cancelled (anyio cancels every await in a cancelled
            # scope): a connection never given back would be lost to the pool.
            with anyio.CancelScope(shield=True):
                try:
                    await transaction.end(commit=False)
                except DBAPIError:
                    pass  # a broken connection: the pool sees it and replaces it
                await self._give_back(connection)
            raise
        if not self._keep(connection):  # nearly always kept: nothing awaited, nothing to cancel
            with anyio.CancelScope(shield=True):
                await self._to_pool(connection)
        return result

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.group_commit.close()
        while self._kept:
            await self._to_pool(self._kept.pop())
        if self._pool is not None:
            await self._pool.close()
