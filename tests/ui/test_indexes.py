"""Every query the dashboard runs walks an index: checked with EXPLAIN QUERY PLAN on SQLite.

The list's response time with 100,000 checkouts is measured by ``tests/ui/bench_list.py`` (a
script, not a timed test); here a few thousand rows are enough for the planner's choices.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.main import create_app
from orchestrator.settings import Settings
from servicekit.db.statements import SqliteTransaction
from servicekit.db.values import sqlite_param
from tests.support import running
from tests.ui.seed import seeded_database

pytestmark = pytest.mark.anyio

ROWS = 3000
# A table read whole, or rows sorted after reading them: what must never happen on a page.
FULL_SCAN = re.compile(r"^SCAN (checkout|step)$|USE TEMP B-TREE")


@pytest.fixture
async def seeded(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    """The orchestrator on SQLite with 3,000 checkouts stored."""
    path = tmp_path / "orchestrator.db"
    await seeded_database(f"sqlite:///{path}", ROWS)
    # No recovery pass while statements are captured (and none cancelled mid-query at the end).
    settings = Settings(database_url=f"sqlite:///{path}", recovery_interval_s=3600)
    async with running(create_app(settings)) as client:
        yield client, path


CAPTURING: ContextVar[bool] = ContextVar("capturing", default=False)


@contextmanager
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """Every SQL statement the kit's SQLite transactions run meanwhile on behalf of this task (so
    of the requests it makes over ASGI, not of the supervisor's recovery loop), with its
    parameters as stored."""
    statements: list[tuple[str, Any]] = []
    run = SqliteTransaction._run

    def record(transaction: SqliteTransaction, statement: Any, params: Any) -> Any:
        if CAPTURING.get():
            stored = {key: sqlite_param(value) for key, value in (params or {}).items()}
            statements.append((statement.sqlite, stored))
        return run(transaction, statement, params)

    monkeypatch.setattr(SqliteTransaction, "_run", record)
    token = CAPTURING.set(True)
    try:
        yield statements
    finally:
        CAPTURING.reset(token)


def plans(path: Path, statements: list[tuple[str, Any]]) -> list[tuple[str, list[str]]]:
    """EXPLAIN QUERY PLAN of each SELECT on the journal's tables."""
    found = []
    with sqlite3.connect(path) as connection:
        for statement, parameters in statements:
            if not re.match(r"\s*SELECT", statement) or (
                "FROM checkout" not in statement and "FROM step" not in statement
            ):
                continue
            rows = connection.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
            found.append((statement, [row[3] for row in rows]))
    return found


async def test_every_dashboard_query_uses_an_index(
    seeded: tuple[httpx.AsyncClient, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list (filtered, searched, paged), the counts and a checkout's page never scan a table."""
    client, path = seeded
    with sqlite3.connect(path) as connection:
        some_id, customer_id = connection.execute("SELECT id, customer_id FROM checkout").fetchone()
    some = uuid.UUID(hex=some_id)
    with captured(monkeypatch) as statements:
        # The counts are shared for two seconds: the first page counts, the next ones reuse them.
        first = await client.get("/ui?limit=50")
        older = re.search(r'rel="next" href="([^"]+)"', first.text)
        assert older is not None
        urls = [
            "/" + older.group(1).replace("&amp;", "&"),
            "/ui?status=failed",
            "/ui?status=running",
            f"/ui?q={customer_id}",
            f"/ui?q={customer_id}&status=completed",
            f"/ui?q={some}",
            "/ui/fragments/list?status=completed",
            f"/ui/checkouts/{some}",
        ]
        for url in urls:
            response = await client.get(url)
            assert response.status_code == 200, url

    explained = plans(path, statements)
    # Every page reads: the first and the paged list (a page and its steps), the counts once.
    loads = [statement for statement, _ in explained if "LEFT OUTER JOIN step" in statement]
    assert len(loads) == 2, loads  # the search by id and the checkout's page
    assert len(explained) >= 2 * (len(urls) - 2)
    for statement, plan in explained:
        assert not [line for line in plan if FULL_SCAN.search(line)], (statement, plan)
    counts = [plan for statement, plan in explained if "GROUP BY" in statement]
    # Any index that starts with status answers the GROUP BY without reading the table.
    assert counts
    for plan in counts:
        assert len(plan) == 1, plan
        assert plan[0].startswith("SCAN checkout USING COVERING INDEX"), plan


async def test_the_counts_cover_every_seeded_checkout(
    seeded: tuple[httpx.AsyncClient, Path],
) -> None:
    """With 3,000 checkouts stored, the counts add up and the first page has 50 rows."""
    client, _ = seeded

    response = await client.get("/ui")

    assert response.status_code == 200
    assert "all <b>3,000</b>" in response.text
    assert response.text.count('class="row status-') == 50
