"""Fixtures of the rewards tests: the app on a fresh database, with an in-process client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from rewards_service.main import create_app
from rewards_service.settings import Settings
from tests.support import running


@pytest.fixture
async def client(database_url: Callable[[str], str]) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a rewards app whose database is empty (SQLite, then PostgreSQL)."""
    app = create_app(Settings(database_url=database_url("rewards")))
    async with running(app) as client:
        yield client
