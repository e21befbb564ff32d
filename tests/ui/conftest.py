"""Fixtures of the dashboard tests: the suite in-process with a fault injector per service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass

import httpx
import pytest

from tests.faults import FaultyTransport
from tests.suite import Suite, running_suite


@dataclass
class FaultySuite:
    """The suite, and the fault injector in front of each service."""

    suite: Suite
    faults: dict[str, FaultyTransport]

    @property
    def orchestrator(self) -> httpx.AsyncClient:
        return self.suite.orchestrator


@pytest.fixture
async def ui(database_url: Callable[[str], str]) -> AsyncIterator[FaultySuite]:
    """The four services in-process; operators park a checkout after one failed attempt."""
    faults: dict[str, FaultyTransport] = {}

    def wrap(name: str, transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        faults[name] = FaultyTransport(transport)
        return faults[name]

    async with running_suite(
        database_url,
        wrap=wrap,
        step_max_attempts=1,
        resume_delay_s=3600,
    ) as suite:
        await suite.stock("SKU-001", 100)
        await suite.stock("SKU-SOLDOUT", 0)
        yield FaultySuite(suite, faults)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of every process log to the report of a failed browser test."""
    del call
    report = yield
    live = getattr(item, "funcargs", {}).get("live")
    if report.failed and live is not None:
        report.sections.append(("process logs (tails)", live.harness.report()))
    return report
