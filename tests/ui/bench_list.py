"""Measure the dashboard with many checkouts stored (a script, not a test).

    .venv/bin/python -m tests.ui.bench_list                     # 100,000 checkouts on SQLite
    .venv/bin/python -m tests.ui.bench_list --database-url postgresql://postgres@127.0.0.1/bench

It starts the orchestrator in-process (httpx over ASGI: no network, rendering included), inserts
the checkouts with SQLAlchemy Core, then requests each page ``--runs`` times after
a warm-up and prints the median and 95th percentile, plus the plan of every query (EXPLAIN QUERY
PLAN on SQLite, EXPLAIN ANALYZE on PostgreSQL). An empty PostgreSQL database is made for it.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import psycopg
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlmodel import col

from orchestrator.journal.journal import Journal
from orchestrator.main import create_app
from orchestrator.models import Checkout
from orchestrator.settings import Settings
from orchestrator.ui import queries as ui_queries
from orchestrator.ui.queries import status_counts
from orchestrator.views import encode_cursor
from servicekit.db.database import Database
from servicekit.db.engines import create_sync_engine
from servicekit.db.statements import PostgresTransaction, SqliteTransaction
from servicekit.db.urls import is_sqlite
from servicekit.db.values import postgres_param, sqlite_param
from tests.support import running
from tests.ui.seed import seeded_database


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def fresh_postgres(url: str) -> str:
    """Create the database ``url`` names (or empty it)."""
    target = make_url(url).set(drivername="postgresql+psycopg")
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        name = target.database
        if not connection.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        ).first():
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    engine = create_engine(target, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


async def timed(client: httpx.AsyncClient, url: str, runs: int) -> tuple[float, float, int]:
    """Median and p95 in milliseconds, and the body size."""
    for _ in range(3):
        response = await client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.text[:300])
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        response = await client.get(url)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return (
        statistics.median(samples),
        samples[int(0.95 * (len(samples) - 1))],
        len(response.content),
    )


async def main(rows: int, database_url: str | None, runs: int, reuse: bool) -> None:
    directory = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    if database_url and not reuse:
        fresh_postgres(database_url)
    url = database_url or f"sqlite:///{directory / 'orchestrator.db'}"
    start = time.perf_counter()
    if not reuse:
        await seeded_database(url, rows)
    settings = Settings(database_url=url, recovery_interval_s=3600)
    async with running(create_app(settings)) as client:
        engine = create_sync_engine(url)
        database = Database.open(url)
        journal = Journal(database, owner="reader", lease_ttl_s=30)
        if engine.dialect.name == "postgresql":
            # What autovacuum does soon after a bulk load: statistics and the visibility map.
            with engine.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT")
                connection.execute(text("VACUUM ANALYZE"))
        how = "reused" if reuse else f"stored in {time.perf_counter() - start:.1f} s"
        say(f"{rows:,} checkouts ({3 * rows:,} steps) on {engine.dialect.name}, {how}")
        with engine.connect() as connection:
            failed = select(Checkout).where(col(Checkout.status) == "failed").limit(1)
            some = connection.execute(failed).one()
            newest_first = col(Checkout.created_at).desc(), col(Checkout.id).desc()
            halfway_down = select(Checkout).order_by(*newest_first).offset(rows // 2).limit(1)
            middle = connection.execute(halfway_down).one()
        halfway = "/ui?cursor=" + encode_cursor(middle.created_at, middle.id)
        first = await client.get("/ui")
        deep = "/ui"
        for _ in range(20):  # 20 pages back: the cursor stays a keyset seek
            found = re.search(r'rel="next" href="([^"]+)"', (await client.get(deep)).text)
            assert found is not None
            deep = "/" + found.group(1).replace("&amp;", "&")
        pages = {
            "list, first page (50 rows)": "/ui",
            "list fragment (what the page polls)": "/ui/fragments/list",
            "list, status=failed": "/ui?status=failed",
            "list, 21st page by cursor": deep,
            f"list, by cursor {rows // 2:,} rows deep": halfway,
            "search by customer id": f"/ui?q={some.customer_id}",
            "search by checkout id": f"/ui?q={some.id}",
            "a checkout's page": f"/ui/checkouts/{some.id}",
        }
        assert "all <b>" + f"{rows:,}" in first.text
        for cached in (False, True):
            # Cold: every request counts anew (a lone visitor); warm: the counts of the last 2 s.
            ui_queries.COUNTS_MAX_AGE_S = 2.0 if cached else 0.0
            say(
                f"\n{'page, counts ' + ('shared' if cached else 'counted each time'):40} {'median':>9} {'p95':>9} {'bytes':>8}"
            )
            for name, page in pages.items():
                median, p95, size = await timed(client, page, runs)
                say(f"{name:40} {median:7.1f}ms {p95:7.1f}ms {size:8,}")
        ui_queries.COUNTS_MAX_AGE_S = 0.0
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            await status_counts(journal)
            samples.append((time.perf_counter() - start) * 1000)
        say(
            f"{'the counts query alone (GROUP BY status)':40} {statistics.median(samples):7.1f}ms {sorted(samples)[int(0.95 * (runs - 1))]:7.1f}ms"
        )
        await explain(client, url, pages)
        await database.close()
        engine.dispose()


async def explain(client: httpx.AsyncClient, url: str, pages: dict[str, str]) -> None:
    """Print the plan of every distinct query the pages run, on a connection of its own."""
    statements: dict[str, tuple[str, Any]] = {}

    postgres = not is_sqlite(url)

    def record(statement: str, parameters: Any) -> None:
        if statement.lstrip().startswith("SELECT") and re.search(
            r"FROM (checkout|step)\b", statement
        ):
            encode = postgres_param if postgres else sqlite_param
            stored = {key: encode(value) for key, value in (parameters or {}).items()}
            statements.setdefault(" ".join(statement.split()), (statement, stored))

    # The kit's transactions run every statement of the app through ``_run``.
    sqlite_run, postgres_run = SqliteTransaction._run, PostgresTransaction._run

    def sqlite_recorded(transaction: SqliteTransaction, statement: Any, params: Any) -> Any:
        record(statement.sqlite, params)
        return sqlite_run(transaction, statement, params)

    async def postgres_recorded(
        transaction: PostgresTransaction, statement: Any, params: Any
    ) -> Any:
        record(statement.postgres, params)
        return await postgres_run(transaction, statement, params)

    SqliteTransaction._run = sqlite_recorded  # type: ignore[method-assign]
    PostgresTransaction._run = postgres_recorded  # type: ignore[method-assign]
    try:
        for page in pages.values():
            await client.get(page)
    finally:
        SqliteTransaction._run = sqlite_run  # type: ignore[method-assign]
        PostgresTransaction._run = postgres_run  # type: ignore[method-assign]
    say("\nplans:")
    for short, (statement, parameters) in statements.items():
        if is_sqlite(url):
            database = make_url(url).database
            assert database
            with sqlite3.connect(database) as connection:
                rows = connection.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
                plan = [row[3] for row in rows]
        else:
            conninfo = (
                make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
            )
            with psycopg.connect(conninfo) as postgres:
                rows = postgres.execute(
                    f"EXPLAIN (ANALYZE, COSTS OFF) {statement}", parameters
                ).fetchall()
                plan = [row[0] for row in rows]
        say(f"- {short[:160]}")
        for line in plan:
            say(f"    {line}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--database-url", help="a PostgreSQL URL (its database is emptied); default SQLite"
    )
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--reuse", action="store_true", help="PostgreSQL: measure the rows a previous run stored"
    )
    args = parser.parse_args()
    anyio.run(main, args.rows, args.database_url, args.runs, args.reuse)
