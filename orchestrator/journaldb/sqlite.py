"""The journal on SQLite: plain pysqlite, each transaction one function run whole.

Where a transaction runs: on the event loop itself, on a connection of its own whose busy
timeout is zero, when the database is free, which is nearly always: with WAL and
``synchronous=NORMAL`` a journal transaction takes tens of microseconds, less than handing it to
another thread and being woken with its result. When another connection holds the write lock
(another process, or this journal's own thread), SQLite answers BUSY at once, the attempt is
rolled back, and the transaction runs again in the journal's thread, which owns a second
connection and may wait there for the lock (``BEGIN IMMEDIATE`` serialises writers, across
processes too) without blocking the loop. Once a transaction holds the write lock a WAL database
does not wait again before its commit, so the loop never waits on a lock. Measured
(``bench/experiments/journal_cost.py``) against the ORM session on aiosqlite: ~0.1 ms of CPU per
transaction in the thread instead of ~1.5-2 ms (about 11 thread hand-offs each).

The loop's connection does not checkpoint the WAL into the database file by itself (copying
pages and syncing the file would stall the loop): every ``CHECKPOINT_EVERY`` of its commits, the
thread makes one (``servicekit.db.restart_checkpoint``). The loop's transactions wait for it to
end and then run on the loop again; they are not handed to the thread meanwhile. Handed over,
they kept it busy long after the checkpoint (at 100 % CPU the loop holds the GIL, so the thread
drains slowly, and every loop transaction that found it holding the write lock joined its queue):
at 32 concurrent checkouts that cost 0.8 ms of CPU per checkout, 30 % of the orchestrator's.

A caller that is cancelled stops waiting; a transaction in the thread still runs to its end if it
had started (as a commit in flight would), or is skipped if it had not, so the thread never stays
behind on a task that is gone. A transaction on the loop cannot be interrupted.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy.exc import DBAPIError

from orchestrator.journaldb.base import (
    INSERT_CHECKOUT,
    INSERT_STEP,
    LEASE_OF,
    Decode,
    JournalDB,
    Refusal,
    Row,
    T,
)
from servicekit.db import connect_sqlite, is_sqlite_busy, restart_checkpoint, utc_text

# How long ``close`` waits for the transactions already queued (a lock held by another process
# can make one wait up to the busy timeout); after that the thread finishes them on its own.
CLOSE_TIMEOUT_S = 5.0
# A journal transaction writes about three pages: about as often as SQLite would checkpoint on
# its own (at 1000 pages), as the journal did when all its transactions ran in its thread.
CHECKPOINT_EVERY = 300

Work = Callable[[sqlite3.Connection], Any]
_Job = tuple[Work | None, "asyncio.Future[Any] | None", "asyncio.AbstractEventLoop | None"]


def _value(value: Any) -> Any:
    kind = type(value)
    if kind is uuid.UUID:
        return value.hex  # SQLAlchemy's Uuid on SQLite: CHAR(32), no hyphens
    if kind is datetime:
        return utc_text(value)
    return value  # booleans: pysqlite stores True/False as 1/0, as SQLAlchemy's Boolean does


def _encode(params: Row) -> Row:
    return tuple(map(_value, params))


def _datetime_of(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # its caller was cancelled meanwhile
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _wrapped(error: sqlite3.Error) -> Exception:
    """A pysqlite error as SQLAlchemy would raise it (callers catch ``IntegrityError``)."""
    return DBAPIError.instance(None, None, error, sqlite3.Error)


def _write_transaction(connection: sqlite3.Connection, work: Callable[[], T]) -> T:
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        if connection.in_transaction:
            connection.execute("COMMIT")
        return result
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


class SqliteJournalDB(JournalDB):
    """The journal's transactions on one SQLite file: on the event loop, or in its thread."""

    decoders: ClassVar[dict[str, Decode]] = {
        "uuid": uuid.UUID,
        "datetime": _datetime_of,
        "bool": bool,
    }

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # The event loop's own connection, and the thread it belongs to (see ``_on_loop``).
        self._loop_connection: sqlite3.Connection | None = None
        self._loop_thread: int | None = None
        self._loop_commits = 0
        # The checkpoint the thread is making, if any (see ``_run``).
        self._checkpoint: asyncio.Future[Any] | None = None

    # --- where a transaction runs -------------------------------------------------------------

    async def _run(self, work: Work) -> Any:
        if self.closed:
            raise RuntimeError("the journal's database is closed")
        loop = asyncio.get_running_loop()
        # A commit on the loop during a checkpoint would keep it from starting the WAL over: wait
        # for it (``wait``: a caller cancelled here does not cancel it), and for the next one if
        # another waiter's commit has started one meanwhile.
        while (checkpoint := self._checkpoint) is not None and checkpoint.get_loop() is loop:
            await asyncio.wait((checkpoint,))
        done, result = self._on_loop(work)
        if done:
            self._loop_commits += 1
            if self._loop_commits % CHECKPOINT_EVERY == 0:
                self._start_checkpoint(loop)
            return result
        future: asyncio.Future[Any] = loop.create_future()
        self._submit(work, future, loop)
        return await future

    def _on_loop(self, work: Work) -> tuple[bool, Any]:
        """Run ``work`` here and now, unless the database is busy: (done, its result).

        BUSY comes before anything is written (at ``BEGIN IMMEDIATE``) or in a plain read; the
        attempt is rolled back either way, so running ``work`` again elsewhere is a fresh try.
        """
        connection = self._loop_connection
        if connection is None or self._loop_thread != threading.get_ident():
            if connection is not None:
                return False, None  # another thread's event loop: its connection is not ours
            try:
                connection = self._open_loop_connection()
            except sqlite3.OperationalError as exc:
                if not is_sqlite_busy(exc):
                    raise _wrapped(exc) from exc
                return False, None
        try:
            return True, work(connection)
        except sqlite3.OperationalError as exc:
            if not is_sqlite_busy(exc):
                raise _wrapped(exc) from exc
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            return False, None
        except sqlite3.Error as exc:
            raise _wrapped(exc) from exc

    def _open_loop_connection(self) -> sqlite3.Connection:
        # Closable from any thread (``close_soon``), used only from this one (``_on_loop``).
        connection = connect_sqlite(self.url, busy_timeout_s=0, check_same_thread=False)
        connection.execute("PRAGMA wal_autocheckpoint = 0")  # see ``restart_checkpoint``
        self._loop_connection, self._loop_thread = connection, threading.get_ident()
        return connection

    def _start_checkpoint(self, loop: asyncio.AbstractEventLoop) -> None:
        checkpoint: asyncio.Future[Any] = loop.create_future()
        self._checkpoint = checkpoint

        def ended(future: asyncio.Future[Any]) -> None:
            if self._checkpoint is future:
                self._checkpoint = None
            if not future.cancelled():
                future.exception()  # a failed checkpoint is retried at the next one

        checkpoint.add_done_callback(ended)
        self._submit(restart_checkpoint, checkpoint, loop)

    def _submit(
        self,
        work: Work,
        future: asyncio.Future[Any] | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        """Queue ``work`` for the journal's thread (``future`` None: nobody waits for it)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="journal-sqlite", daemon=True)
            self._thread.start()
        self._jobs.put((work, future, loop))

    def _serve(self) -> None:
        connection: sqlite3.Connection | None = None
        while True:
            work, future, loop = self._jobs.get()
            if work is None:  # close: the jobs queued before it are done
                if connection is not None:
                    connection.close()
                if future is not None and loop is not None:
                    self._reply(loop, future, None, None)
                return
            if future is not None and future.cancelled():  # its caller stopped waiting
                continue
            result: Any = None
            error: BaseException | None = None
            try:
                if connection is None:
                    connection = connect_sqlite(self.url)
                result = work(connection)
            except sqlite3.Error as exc:
                error = _wrapped(exc)
            except BaseException as exc:
                error = exc
            if future is not None and loop is not None:
                self._reply(loop, future, result, error)

    @staticmethod
    def _reply(
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        result: Any,
        error: BaseException | None,
    ) -> None:
        try:
            loop.call_soon_threadsafe(_settle, future, result, error)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._close_loop_connection()
        if self._thread is None:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._jobs.put((None, done, loop))
        await asyncio.wait([done], timeout=CLOSE_TIMEOUT_S)

    def close_soon(self) -> None:
        if not self.closed:
            self.closed = True
            self._close_loop_connection()
            if self._thread is not None:
                self._jobs.put((None, None, None))

    def _close_loop_connection(self) -> None:
        # Nothing runs on it now: its transactions never span an await.
        if self._loop_connection is not None:
            self._loop_connection.close()
            self._loop_connection = None

    # --- transactions -------------------------------------------------------------------------

    async def insert(self, values: Row, steps: Sequence[tuple[str, int]]) -> None:
        row = _encode(values)
        checkout_id = row[0]
        step_rows = [(checkout_id, name, position, "pending", 0) for name, position in steps]

        def work(connection: sqlite3.Connection) -> None:
            def insert() -> None:
                connection.execute(INSERT_CHECKOUT, row)
                connection.executemany(INSERT_STEP, step_rows)

            _write_transaction(connection, insert)

        await self._run(work)

    async def fetch(self, sql: str, params: Row, convert: Callable[[list[Row]], T]) -> T:
        encoded = _encode(params)

        # One SELECT reads one snapshot on its own: no BEGIN, and no write lock taken.
        def work(connection: sqlite3.Connection) -> T:
            return convert(connection.execute(sql, encoded).fetchall())

        result: T = await self._run(work)
        return result

    async def write(self, sql: str, params: Row) -> int:
        encoded = _encode(params)

        def work(connection: sqlite3.Connection) -> int:
            return _write_transaction(connection, lambda: connection.execute(sql, encoded).rowcount)

        count: int = await self._run(work)
        return count

    async def write_returning(self, sql: str, params: Row) -> Any:
        encoded = _encode(params)

        def work(connection: sqlite3.Connection) -> Any:
            # fetchall: the statement must be finished before COMMIT.
            rows = _write_transaction(
                connection, lambda: connection.execute(sql, encoded).fetchall()
            )
            return rows[0][0] if rows else None

        return await self._run(work)

    async def fenced(
        self, fence: tuple[str, Row], steps: Sequence[tuple[str, Row]], checkout_id: uuid.UUID
    ) -> tuple[bool, Refusal]:
        fence_sql, fence_params = fence[0], _encode(fence[1])
        step_statements = [(sql, _encode(params)) for sql, params in steps]

        def work(connection: sqlite3.Connection) -> tuple[bool, Refusal]:
            def transaction() -> tuple[bool, Refusal]:
                if connection.execute(fence_sql, fence_params).rowcount != 1:
                    # Why it matched nothing, read under the same lock, then nothing is written.
                    lease = connection.execute(LEASE_OF, (checkout_id.hex,)).fetchone()
                    connection.execute("ROLLBACK")
                    return False, (lease[0], lease[1]) if lease else None
                for step_sql, step_params in step_statements:
                    connection.execute(step_sql, step_params)
                return True, None

            return _write_transaction(connection, transaction)

        outcome: tuple[bool, Refusal] = await self._run(work)
        return outcome
