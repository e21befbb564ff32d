"""Fixtures of the end-to-end tests: a process harness whose logs join a failed test's report."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from tests.e2e.harness import Harness

HARNESS = pytest.StashKey[Harness]()


@pytest.fixture
async def harness(
    tmp_path: Path, request: pytest.FixtureRequest, anyio_backend: str
) -> AsyncIterator[Harness]:
    """Starts real processes for the test; kills whatever still runs at the end."""
    del anyio_backend  # requested so the fixture runs on the test's event loop
    started = Harness(tmp_path)
    request.node.stash[HARNESS] = started
    try:
        yield started
    finally:
        try:
            await started.aclose()
        finally:
            started.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of every process log to the report of a failed test."""
    del call
    report = yield
    started = item.stash.get(HARNESS, None)
    if report.failed and started is not None and started.processes:
        report.sections.append(("process logs (tails)", started.report()))
    return report
