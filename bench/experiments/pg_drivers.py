"""What one journal write costs on PostgreSQL, in CPU, through psycopg's pool and asyncpg's.

``python -m bench.experiments.pg_drivers [--url postgresql://postgres@127.0.0.1:5432/postgres]``

Creates a scratch table in the database at ``--url`` (dropped at the end) and runs ``--n``
statements shaped like the journal's fenced write (an ``UPDATE … RETURNING`` inside a CTE that
counts the rows it touched) from this process on uvloop, at each ``--concurrency``, through:

- ``psycopg``: a ``psycopg_pool.AsyncConnectionPool`` of autocommit connections, a connection
  borrowed per statement (what ``orchestrator.journaldb.postgres`` does);
- ``asyncpg``: ``asyncpg.create_pool`` with its default reset on release (one more round trip);
- ``asyncpg-noreset``: the same pool told not to reset connections.

asyncpg is not a dependency of the suite: ``pip install asyncpg`` first, or its rows are skipped.
Reports this process's CPU per statement (``time.process_time``) and statements per second.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import uvloop
from psycopg_pool import AsyncConnectionPool

from bench import emit

TABLE = "bench_pg_drivers"
ROWS = 64
UPDATE = (
    f"WITH touched AS (UPDATE {TABLE} SET v = {{0}}, s = {{1}} WHERE id = {{2}} RETURNING id) "
    "SELECT count(*) FROM touched"
)


async def _measure(
    label: str, one: Callable[[int], Awaitable[None]], n: int, concurrency: int
) -> None:
    each = max(1, n // concurrency)

    async def worker() -> None:
        for i in range(each):
            await one(i)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    total = each * concurrency
    emit(
        f"{label:16s} C={concurrency:<3d} {1e6 * cpu / total:6.0f} µs CPU/statement"
        f"  {total / wall:7.0f} statements/s"
    )


async def _psycopg(url: str, n: int, concurrency: int) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url, kwargs={"autocommit": True}, min_size=2, max_size=20, open=False
    )
    await pool.open()
    statement = UPDATE.format("%s", "%s", "%s")

    async def one(i: int) -> None:
        connection = await pool.getconn()
        try:
            cursor = await connection.execute(statement, (i, "abc", i % ROWS + 1))
            await cursor.fetchone()
        finally:
            await pool.putconn(connection)

    try:
        await _measure("psycopg", one, n, concurrency)
    finally:
        await pool.close()


async def _asyncpg(url: str, n: int, concurrency: int, *, reset: bool) -> None:
    import asyncpg  # type: ignore[import-not-found]

    async def no_reset(_: Any) -> None:
        return None

    pool = await asyncpg.create_pool(
        url, min_size=2, max_size=20, **({} if reset else {"reset": no_reset})
    )
    statement = UPDATE.format("$1", "$2", "$3")

    async def one(i: int) -> None:
        async with pool.acquire() as connection:
            await connection.fetchval(statement, i, "abc", i % ROWS + 1)

    try:
        await _measure("asyncpg" if reset else "asyncpg-noreset", one, n, concurrency)
    finally:
        await pool.close()


async def main(url: str, n: int, concurrencies: list[int]) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await admin.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await admin.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, v int, s text)")
        await admin.execute(
            f"INSERT INTO {TABLE} SELECT g, 0, 'x' FROM generate_series(1, {ROWS}) g"
        )
        try:
            import asyncpg  # noqa: F401
        except ImportError:
            emit("asyncpg is not installed (pip install asyncpg): its rows are skipped")
            with_asyncpg = False
        else:
            with_asyncpg = True
        try:
            for concurrency in concurrencies:
                await _psycopg(url, n, concurrency)
                if with_asyncpg:
                    await _asyncpg(url, n, concurrency, reset=True)
                    await _asyncpg(url, n, concurrency, reset=False)
        finally:
            await admin.execute(f"DROP TABLE IF EXISTS {TABLE}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--n", type=int, default=6400)
    parser.add_argument("--concurrency", default="1,32")
    args = parser.parse_args()
    uvloop.run(main(args.url, args.n, [int(c) for c in args.concurrency.split(",")]))
