"""The journal on PostgreSQL: plain SQL on psycopg's async connections, one round trip each.

Connections come from a ``psycopg_pool`` pool in autocommit mode, and every transaction is a
single statement, so it costs one round trip: the fenced ``UPDATE checkout`` and the ``UPDATE
step`` it guards are one statement (the step's update is a data-modifying CTE that only touches
the step when the fenced update returned the checkout's row), and so are the checkout's insert
with its steps. psycopg prepares the statements it sees repeatedly by itself.

Instead of a ``SELECT 1`` before each borrowed connection (SQLAlchemy's ``pool_pre_ping``), the
pool's check looks whether the idle connection's socket has anything to read, which costs no
round trip: a server that ended the session (restart, ``pg_terminate_backend``, idle timeout)
has sent its farewell or closed the socket, and only then is the connection pinged (and
replaced if the ping fails). A connection that dies unannounced fails its one statement, as it
could after a ping too; the pool then replaces it.
"""

from __future__ import annotations

import asyncio
import select
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import anyio
import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from orchestrator.journaldb.base import (
    CHECKOUT_COLUMNS,
    LEASE_OF,
    Decode,
    JournalDB,
    Refusal,
    Row,
    T,
)

POOL_MIN_SIZE = 2
POOL_MAX_SIZE = 20
# How long a transaction waits for a connection (the pool reconnects meanwhile) before failing.
POOL_TIMEOUT_S = 10.0

_INSERT = (
    f"WITH inserted AS (INSERT INTO checkout ({', '.join(CHECKOUT_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(CHECKOUT_COLUMNS))}) RETURNING id) "
    "INSERT INTO step (checkout_id, name, position, status, attempts) "
    "SELECT inserted.id, new.name, new.position, 'pending', 0 "
    "FROM inserted, unnest(%s::varchar[], %s::integer[]) AS new (name, position)"
)


def _has_input(connection: psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle connection's socket is readable: the server said or closed something."""
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


async def _check(connection: psycopg.AsyncConnection[Any]) -> None:
    """The pool's check on borrow: a ping only for a connection the server may have ended."""
    if connection.closed or _has_input(connection):
        await AsyncConnectionPool.check_connection(connection)


def _datetime_of(value: datetime) -> datetime:
    return value.astimezone(UTC)  # as UTCDateTime reads it back


def _checked(params: Row) -> Row:
    for value in params:
        if type(value) is datetime and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
    return params


class PostgresJournalDB(JournalDB):
    """The journal's transactions on PostgreSQL, through a pool of autocommit connections."""

    decoders: ClassVar[dict[str, Decode]] = {"datetime": _datetime_of}

    def __init__(self, url: str) -> None:
        super().__init__()
        self.conninfo = make_url(url).set(drivername="postgresql").render_as_string(False)
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sql: dict[str, str] = {}

    def _pg(self, sql: str) -> str:
        """``sql`` with psycopg's placeholders."""
        translated = self._sql.get(sql)
        if translated is None:
            translated = self._sql[sql] = sql.replace("?", "%s")
        return translated

    async def _connected(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        if self.closed:
            raise RuntimeError("the journal's database is closed")
        pool = self._pool
        if pool is not None:
            if asyncio.get_running_loop() is not self._loop:
                raise RuntimeError("the journal's PostgreSQL pool belongs to another event loop")
            return pool
        pool = AsyncConnectionPool(
            self.conninfo,
            kwargs={"autocommit": True},
            min_size=POOL_MIN_SIZE,
            max_size=POOL_MAX_SIZE,
            timeout=POOL_TIMEOUT_S,
            check=_check,
            name="orchestrator-journal",
            open=False,
        )
        await pool.open()
        if self._pool is not None:  # another task opened one meanwhile
            await pool.close()
            return self._pool
        self._pool, self._loop = pool, asyncio.get_running_loop()
        return pool

    async def _run(self, sql: str, work: Callable[[psycopg.AsyncConnection[Any]], Any]) -> Any:
        pool = await self._connected()
        connection = await pool.getconn()
        try:
            return await work(connection)
        except psycopg.Error as exc:
            raise DBAPIError.instance(sql, None, exc, psycopg.Error) from exc
        finally:
            # Returned even when the caller is being cancelled (anyio cancels every await in a
            # cancelled scope): a connection never given back would be lost to the pool.
            with anyio.CancelScope(shield=True):
                await pool.putconn(connection)

    def _fenced_steps(self, fence_sql: str, step_sqls: Sequence[str]) -> str:
        """One statement for all UPDATEs: each step's, a data-modifying CTE, touches its step only
        if the fenced UPDATE returned the checkout's row (all run on one snapshot, so each step
        may appear once)."""
        key = "\n".join((fence_sql, *step_sqls))
        statement = self._sql.get(key)
        if statement is None:
            moves = "".join(
                f", moved{index} AS ("
                + self._pg(step_sql).replace(
                    "WHERE checkout_id = %s", "WHERE checkout_id IN (SELECT id FROM fenced)"
                )
                + ")"
                for index, step_sql in enumerate(step_sqls)
            )
            statement = self._sql[key] = (
                f"WITH fenced AS ({self._pg(fence_sql)} RETURNING id){moves} "
                "SELECT count(*) FROM fenced"
            )
        return statement

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._pool is not None:
            await self._pool.close()

    def close_soon(self) -> None:
        # Without an event loop to run on, the pool cannot be closed cleanly; it goes with the
        # process. The app closes its journal in its lifespan, so this is for stray engines.
        self.closed = True

    # --- transactions -------------------------------------------------------------------------

    async def insert(self, values: Row, steps: Sequence[tuple[str, int]]) -> None:
        params = (
            *_checked(values),
            [name for name, _ in steps],
            [position for _, position in steps],
        )

        async def work(connection: psycopg.AsyncConnection[Any]) -> None:
            await connection.execute(_INSERT, params)

        await self._run(_INSERT, work)

    async def fetch(self, sql: str, params: Row, convert: Callable[[list[Row]], T]) -> T:
        statement = self._pg(sql)

        async def work(connection: psycopg.AsyncConnection[Any]) -> list[Row]:
            cursor = await connection.execute(statement, params)
            return await cursor.fetchall()

        return convert(await self._run(statement, work))

    async def write(self, sql: str, params: Row) -> int:
        statement = self._pg(sql)
        checked = _checked(params)

        async def work(connection: psycopg.AsyncConnection[Any]) -> int:
            return (await connection.execute(statement, checked)).rowcount

        count: int = await self._run(statement, work)
        return count

    async def write_returning(self, sql: str, params: Row) -> Any:
        statement = self._pg(sql)
        checked = _checked(params)

        async def work(connection: psycopg.AsyncConnection[Any]) -> Any:
            row = await (await connection.execute(statement, checked)).fetchone()
            return row[0] if row else None

        return await self._run(statement, work)

    async def fenced(
        self, fence: tuple[str, Row], steps: Sequence[tuple[str, Row]], checkout_id: uuid.UUID
    ) -> tuple[bool, Refusal]:
        if not steps:
            written = await self.write(fence[0], fence[1])
        else:
            statement = self._fenced_steps(fence[0], [sql for sql, _ in steps])
            # Each step's parameters less its checkout_id, which comes from the fenced row.
            params: Row = _checked(fence[1])
            for _, step_params in steps:
                params += (*_checked(step_params[:-2]), step_params[-1])

            async def work(connection: psycopg.AsyncConnection[Any]) -> int:
                row = await (await connection.execute(statement, params)).fetchone()
                return int(row[0]) if row else 0

            written = await self._run(statement, work)
        if written == 1:
            return True, None
        # Nothing was written; why (the lease as it is now) takes a second statement.
        lease = await self.fetch(LEASE_OF, (checkout_id,), lambda rows: rows[0] if rows else None)
        return False, (lease[0], lease[1]) if lease else None
