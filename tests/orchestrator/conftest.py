"""Fixtures of the orchestrator tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from tests.suite import Suite, running_suite


@pytest.fixture
async def suite(database_url: Callable[[str], str]) -> AsyncIterator[Suite]:
    """The four services in-process, with a small stock of SKU-001 and SKU-002."""
    async with running_suite(database_url) as started:
        await started.stock("SKU-001", 10)
        await started.stock("SKU-002", 5)
        await started.stock("SKU-SOLDOUT", 0)
        yield started
