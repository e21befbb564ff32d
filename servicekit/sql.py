"""Plain SQL on the engine's own DBAPI connections, for the services' hot write paths.

A service's mutating endpoints (reserve, credit, send, void) are a handful of statements each. Run
through an ORM session they cost several milliseconds of CPU per request (statement compilation
and caching, unit-of-work flushes, identity map, attribute events), and a sync route plus a
session dependency costs three thread hand-offs. Here each request's database work is one
function of a ``Transaction``, with statements written once in SQL that both backends accept, on
connections of the engine (so the pool, its limits and the connection set-up of
``servicekit.db`` still apply).

- ``SQL("... WHERE id = :id")`` is written with ``:name`` parameters; psycopg gets ``%(name)s``.
- Values are stored exactly as the SQLAlchemy column types store them, so the ORM reads them
  back: ``Uuid`` is 32 hex digits on SQLite and ``uuid`` on PostgreSQL; ``UTCDateTime`` is naive
  UTC text (``YYYY-MM-DD HH:MM:SS.ffffff``) on SQLite and ``timestamptz`` on PostgreSQL.
- A transaction begins with its first statement (``BEGIN IMMEDIATE`` on SQLite, as every
  transaction of ``servicekit.db``'s engines does, so writers never deadlock upgrading a lock) and
  ends with ``commit`` or ``rollback``; the next statement begins another.
- Where it runs (``Transactions.run``): on PostgreSQL in a worker thread, concurrently with other
  requests, up to the thread and connection pools. On SQLite, whose writers are serialised by the
  database anyway, on the event loop itself when the write lock is free (no thread hand-off), else
  in a worker thread, one at a time, where it may wait on ``busy_timeout`` like any transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from uuid import UUID

import anyio
from sqlalchemy import Engine
from starlette.requests import Request

from servicekit.db import is_sqlite_busy, restart_checkpoint, utc_text

T = TypeVar("T")
Params = Mapping[str, Any]
# A quoted literal or identifier (left as it is), or a ``:name`` parameter (not a ``::`` cast).
_NAMED = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|(?<![:\w]):(\w+)""")
# A hot-path transaction writes up to about ten pages; SQLite's own checkpoint is at 1000.
_CHECKPOINT_EVERY = 100


class SQL:
    """One statement, with ``:name`` parameters, in the form each driver takes."""

    __slots__ = ("postgres", "sqlite")

    def __init__(self, text: str) -> None:
        if "%" in text:
            raise ValueError("write % as a parameter: psycopg reads it as a placeholder")
        self.sqlite = text
        self.postgres = _NAMED.sub(
            lambda match: match[0] if match[1] is None else f"%({match[1]})s", text
        )

    def __repr__(self) -> str:
        return f"SQL({self.sqlite!r})"


class Transaction:
    """Statements on one pooled DBAPI connection; see the module docstring for the rules."""

    def __init__(self, connection: Any, *, postgres: bool, integrity_error: type[Exception]):
        self.connection = connection
        self.cursor = connection.cursor()
        self.postgres = postgres
        self.IntegrityError = integrity_error
        self._open = False

    # --- statements -------------------------------------------------------------------------

    def execute(self, statement: SQL, params: Params | None = None) -> Any:
        """Run ``statement``, beginning a transaction if none is open; returns the cursor."""
        if not self._open:
            if not self.postgres:
                self.cursor.execute("BEGIN IMMEDIATE")
            self._open = True
        text = statement.postgres if self.postgres else statement.sqlite
        self.cursor.execute(text, params or {})
        return self.cursor

    def one(self, statement: SQL, params: Params | None = None) -> Any:
        """The first row of ``statement``'s result, or None."""
        return self.execute(statement, params).fetchone()

    def all(self, statement: SQL, params: Params | None = None) -> list[Any]:
        """Every row of ``statement``'s result."""
        return list(self.execute(statement, params).fetchall())

    def rowcount(self, statement: SQL, params: Params | None = None) -> int:
        """How many rows ``statement`` changed."""
        return int(self.execute(statement, params).rowcount)

    def commit(self) -> None:
        if self._open:
            self.connection.commit()  # if it fails, the transaction is still to be rolled back
            self._open = False

    def rollback(self) -> None:
        if self._open:
            self._open = False
            self.connection.rollback()

    # --- values, as the SQLAlchemy column types store them --------------------------------

    def uuid(self, value: UUID) -> Any:
        """A ``Uuid`` column's parameter."""
        return value if self.postgres else value.hex

    @staticmethod
    def uuid_of(value: Any) -> UUID:
        """A ``Uuid`` column's value."""
        return value if isinstance(value, UUID) else UUID(hex=value)

    def timestamp(self, value: datetime | None) -> Any:
        """A ``UTCDateTime`` column's parameter (``value`` must be aware)."""
        if value is None:
            return None
        if self.postgres:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            return value
        return utc_text(value)

    @staticmethod
    def timestamp_of(value: Any) -> datetime:
        """A non-null ``UTCDateTime`` column's value: aware, in UTC."""
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            raise TypeError(f"not a timestamp: {value!r}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @classmethod
    def optional_timestamp_of(cls, value: Any) -> datetime | None:
        """A nullable ``UTCDateTime`` column's value: aware, in UTC, or None."""
        return None if value is None else cls.timestamp_of(value)


class Transactions:
    """Runs functions of a ``Transaction``: on the event loop (SQLite) or in a worker thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        dbapi = engine.dialect.loaded_dbapi
        self._integrity_error: type[Exception] = dbapi.IntegrityError
        self._dbapi_error: type[Exception] = dbapi.Error
        self._limiter: anyio.CapacityLimiter | None = None
        self._loop_connection: Any = None  # SQLite: the event loop's own, see ``_on_loop``
        self._runs_on_loop = 0
        self._checkpoint_ended: anyio.Event | None = None  # set while a checkpoint runs

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A transaction on a pooled connection; rolled back unless committed, then returned."""
        connection = self.engine.raw_connection()
        try:
            transaction = Transaction(
                connection, postgres=self.postgres, integrity_error=self._integrity_error
            )
            try:
                yield transaction
            except self._dbapi_error as exc:
                # What a SQLAlchemy Connection does for its own: a dead connection leaves the pool.
                dialect = self.engine.dialect
                if dialect.is_disconnect(
                    cast(Any, exc), connection.dbapi_connection, transaction.cursor
                ):
                    connection.invalidate(exc)
                raise
            finally:
                if connection.is_valid:
                    transaction.rollback()
                    transaction.cursor.close()
        finally:
            connection.close()

    def call(self, work: Callable[[Transaction], T]) -> T:
        """``work(transaction)`` in this thread; what it leaves uncommitted is rolled back."""
        with self.transaction() as transaction:
            return work(transaction)

    async def run(self, work: Callable[[Transaction], T]) -> T:
        """``work(transaction)``, committed as it says; see ``_on_loop`` for where.

        ``work`` may roll back and carry on, but commits at most once, as its last statement:
        on SQLite it may be started again from the beginning if its first try had to wait.

        PostgreSQL: in a worker thread (one hop), concurrently with other requests. SQLite: on
        the event loop when the database is free, else in a worker thread, one at a time.
        """
        if not self.postgres:
            if self._limiter is None:
                self._limiter = anyio.CapacityLimiter(1)
            # While a checkpoint runs, transactions wait for it to end, then run on the loop:
            # one committing meanwhile would keep it from starting the WAL over. Not handed to
            # the worker thread instead: under load the loop holds the GIL, the thread drains
            # slowly, and every transaction that finds it holding the write lock joins its queue.
            while self._checkpoint_ended is not None:  # the next one, if a waiter started it
                await self._checkpoint_ended.wait()
            done, result = self._on_loop(work)
            if done:
                self._runs_on_loop += 1
                if self._runs_on_loop % _CHECKPOINT_EVERY == 0:
                    await self._checkpoint_in_turn()
                return result  # type: ignore[return-value]
        return await anyio.to_thread.run_sync(self.call, work, limiter=self._limiter)

    async def _checkpoint_in_turn(self) -> None:
        ended = self._checkpoint_ended = anyio.Event()
        try:
            await anyio.to_thread.run_sync(self._checkpoint, limiter=self._limiter)
        finally:
            self._checkpoint_ended = None
            ended.set()

    async def run_in_turn(self, *works: Callable[[Transaction], T]) -> list[T]:
        """``run`` each of ``works`` in turn, each its own transaction function.

        On PostgreSQL they share one worker-thread hop and one pooled connection (one checkout,
        so one ``pool_pre_ping``), instead of one each.
        """
        if not self.postgres:
            return [await self.run(work) for work in works]

        def in_turn() -> list[T]:
            with self.transaction() as transaction:
                results = []
                for work in works:
                    results.append(work(transaction))
                    transaction.rollback()  # what one leaves uncommitted is not the next one's
                return results

        return await anyio.to_thread.run_sync(in_turn)

    def _on_loop(self, work: Callable[[Transaction], T]) -> tuple[bool, T | None]:
        """SQLite: run ``work`` right here on the event loop, unless it would have to wait.

        A hand-off to a worker thread and back costs more CPU than a SQLite transaction of the
        hot path (and, under load, both threads then fight for the GIL). So the event loop runs
        it on a connection of its own whose busy timeout is zero: it never waits for the write
        lock. If another connection holds the lock (a read in a worker thread, another process),
        SQLite says BUSY at once, the transaction is rolled back, and ``(False, None)`` tells
        the caller to run ``work`` again in a worker thread, where it may wait. ``work`` only
        touches the database, so running it again after a rollback is a fresh attempt. Once the
        write lock is held (``BEGIN IMMEDIATE``), a WAL database does not wait again before the
        commit, so the loop is never blocked on a lock.
        """
        if self._loop_connection is None:
            connection = self.engine.raw_connection()
            connection.detach()  # its own from now on: tuned by the pool's connect hook, never shared
            cursor = connection.cursor()
            cursor.execute("PRAGMA busy_timeout = 0")
            # Its commits do not checkpoint the WAL into the database file (copying pages and
            # syncing the file would stall the loop): ``_checkpoint`` does, in a worker thread.
            cursor.execute("PRAGMA wal_autocheckpoint = 0")
            cursor.close()
            self._loop_connection = connection
        transaction = Transaction(
            self._loop_connection, postgres=False, integrity_error=self._integrity_error
        )
        try:
            return True, work(transaction)
        except self._dbapi_error as exc:
            if not is_sqlite_busy(exc):
                raise
            return False, None
        finally:
            transaction.rollback()
            transaction.cursor.close()

    def _checkpoint(self) -> None:
        """A RESTART checkpoint (``servicekit.db.restart_checkpoint``) on a pooled connection.

        SQLite checkpoints by itself when a commit leaves the WAL over 1000 pages; the event
        loop's connection does not (``wal_autocheckpoint = 0``), so every ``_CHECKPOINT_EVERY``
        of its transactions one is made here, in a worker thread; the loop's transactions
        meanwhile wait for it to end (``run``).
        """
        connection = self.engine.raw_connection()
        try:
            restart_checkpoint(connection)
        finally:
            connection.close()

    def close(self) -> None:
        """Close the event loop's own connection (SQLite), if it was opened."""
        if self._loop_connection is not None:
            self._loop_connection.close()
            self._loop_connection = None


def transactions_of(request: Request) -> Transactions:
    """The ``Transactions`` the app's lifespan yielded in its state (``"transactions"``)."""
    transactions: Transactions = request.state.transactions
    return transactions
