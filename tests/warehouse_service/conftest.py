"""Fixtures of the warehouse tests: an app on a fresh database, per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from tests.support import running
from warehouse_service.main import create_app
from warehouse_service.settings import Settings


@pytest.fixture
async def client(
    database_url: Callable[[str], str], anyio_backend: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a warehouse on an empty database (no demo catalog)."""
    del anyio_backend  # requested so the fixture runs on the test's event loop
    app = create_app(Settings(database_url=database_url("warehouse"), seed_demo_catalog=False))
    async with running(app) as client:
        yield client
