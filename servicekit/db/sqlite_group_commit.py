"""Group commit on SQLite: the shared transactions of one event-loop turn committed as one.

On SQLite a transaction runs on the event loop from its BEGIN to its COMMIT without suspending
(``servicekit.db.database``), so nothing is ever "under way" to wait behind, as writes are on
PostgreSQL (``servicekit.db.group_commit``). What can be shared is the moment: every shared
transaction asked for during one turn of the loop (several checkouts woken by their services'
answers at once) waits for the end of that turn, and they then run one after another inside one
``BEGIN IMMEDIATE`` … ``COMMIT``. The commit's cost is mostly per transaction, not per row: the
file locks taken and released, and one WAL frame written per page changed, where neighbouring
checkouts' rows share their pages. Measured on this machine: ~25-30 µs of CPU for a one-row
transaction alone against ~5-7 µs per row in a transaction of 16.

Every caller still waits for the COMMIT of its own transaction, so what it wrote is as durable
when it returns as before. Waiting for the end of the turn costs two more loop turns per
transaction (~15-20 µs of CPU here), for nothing when no other writer could share it: so a
transaction waits only while at least two tasks say they write concurrently (``writer``, the
orchestrator's sagas in flight); otherwise it runs at once, as an unshared one.

A shared transaction function must write only what it would write alone, and must be safe to
start again (as every transaction function: ``Database.run``). When one of a batch raises (a
unique key taken), the batch is rolled back and each of its transactions run again alone, so
each caller gets its own answer and nothing is applied twice; so too when the loop may not
write (a checkpoint runs). When another connection holds the write lock (another process on the
same file), the batch is tried again as a whole after the sleeps an unshared transaction would
take (``sqlite.busy_delays``), and only after them runs each alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import DBAPIError

from servicekit.db import sqlite
from servicekit.db.statements import SqliteTransaction, Transaction

# At most this many transactions in one: the loop does nothing else while a batch runs.
MAX_BATCH = 64

Work = Callable[[Transaction], Coroutine[Any, Any, Any]]
Shared = tuple[Work, "asyncio.Future[Any]"]
# ``_together``'s answer when another connection held the write lock: nothing was written.
BUSY: Any = object()


def complete(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a SQLite transaction function to its end in one step (it never suspends)."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value
    coroutine.close()
    raise RuntimeError("a SQLite transaction function awaited something other than its statements")


class SqliteGroupCommit:
    """Shared transactions of one loop turn, run in one transaction on the loop's connection.

    ``begin``: a write transaction on the loop's connection, or None when the loop may not write
    now (a checkpoint runs, the database is closed); ``alone``: how an unshared transaction
    runs (on the loop, or in the worker thread when the database is busy); ``committed``: told
    after each batch committed, with how many transactions it held.
    """

    def __init__(
        self,
        begin: Callable[[], SqliteTransaction | None],
        alone: Callable[[Work], Awaitable[Any]],
        committed: Callable[[int], None],
    ) -> None:
        self._begin = begin
        self._alone = alone
        self._committed = committed
        self._waiting: list[Shared] | None = None
        self._fallbacks: set[asyncio.Task[None]] = set()
        #: tasks writing concurrently (``writer``): with fewer than two, nothing waits
        self.writers = 0
        #: transactions committed together with at least one other (for tests and benchmarks)
        self.shared = 0
        #: batches tried again after finding the database busy (for tests and benchmarks)
        self.busy_retries = 0

    @contextmanager
    def writer(self) -> Iterator[None]:
        """While open, one task more that may write at the same time as others."""
        self.writers += 1
        try:
            yield
        finally:
            self.writers -= 1

    async def run(self, work: Work) -> Any:
        """``work`` committed, with the others of this loop turn; its result."""
        if self.writers < 2 and self._waiting is None:
            return await self._alone(work)  # nobody to share the turn with: at once
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        if self._waiting is None:
            self._waiting = []
            # Runs after the callbacks already due in this turn: the tasks woken with this one.
            loop.call_soon(self._commit_waiting)
        self._waiting.append((work, answer))
        return await answer

    def _commit_waiting(self) -> None:
        waiting, self._waiting = self._waiting or [], None
        # A caller cancelled while it waited is never run.
        waiting = [(work, answer) for work, answer in waiting if not answer.cancelled()]
        for start in range(0, len(waiting), MAX_BATCH):
            self._commit(waiting[start : start + MAX_BATCH])

    def _commit(self, batch: list[Shared]) -> None:
        results = self._together(batch)
        if results is BUSY:
            self._in_task(self._when_free(batch))
        elif results is None:
            self._in_task(self._run_alone(batch))
        else:
            self._answer(batch, results)

    def _answer(self, batch: list[Shared], results: list[Any]) -> None:
        if len(batch) > 1:
            self.shared += len(batch)
        for (_work, answer), result in zip(batch, results, strict=True):
            answer.set_result(result)
        self._committed(len(batch))

    def _together(self, batch: list[Shared]) -> list[Any] | None:
        """Each work's result once all are committed in one transaction; None or BUSY: nothing was."""
        transaction = self._begin()
        if transaction is None:
            return None
        try:
            results = [complete(work(transaction)) for work, _answer in batch]
            transaction.end(commit=True)
            return results
        except DBAPIError as exc:
            return BUSY if exc.orig is not None and sqlite.is_busy(exc.orig) else None
        except Exception:
            return None
        finally:
            try:
                transaction.end(commit=False)  # nothing left open once committed
            except Exception:
                pass

    async def _when_free(self, batch: list[Shared]) -> None:
        """The batch tried again as one while another connection holds the lock, then alone."""
        for delay in sqlite.busy_delays():
            await asyncio.sleep(delay)
            # Between the tries a caller may have been cancelled: it is never run.
            batch = [(work, answer) for work, answer in batch if not answer.cancelled()]
            if not batch:
                return
            results = self._together(batch)
            if results is BUSY:
                self.busy_retries += 1
                continue
            if results is not None:
                self._answer(batch, results)
                return
            break
        await self._run_alone(batch)

    def _in_task(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._fallbacks.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(self._fallbacks.discard)

    async def _run_alone(self, batch: list[Shared]) -> None:
        for work, answer in batch:
            if answer.cancelled():
                continue
            try:
                result = await self._alone(work)
            except BaseException as exc:
                if not answer.cancelled():
                    answer.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                if not answer.cancelled():
                    answer.set_result(result)
