"""Fixtures of the several-hosts tests: a test network, its own PostgreSQL, and the suite on it.

They run where network namespaces work (root, iproute2, TAP devices, PostgreSQL's server
binaries) and skip with the reason elsewhere; with REQUIRE_NETNS=1 (as CI sets) a missing
piece fails them instead.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# The e2e hook that joins the processes' logs to a failed test's report, for these tests too.
from tests.e2e.conftest import HARNESS, pytest_runtest_makereport  # noqa: F401
from tests.e2e.harness import Harness
from tests.netns import network, postgres
from tests.netns.cluster import FIGURES, HOSTS, Cluster
from tests.netns.network import TestNetwork
from tests.netns.postgres import TestPostgres

REQUIRE_NETNS = os.environ.get("REQUIRE_NETNS") == "1"


@pytest.fixture(scope="session")
def netns_available() -> None:
    reason = network.unavailable() or postgres.unavailable()
    if reason is not None:
        if REQUIRE_NETNS:
            pytest.fail(f"REQUIRE_NETNS=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture
def test_network(netns_available: None, tmp_path: Path) -> Iterator[TestNetwork]:
    del netns_available  # requested for its skip
    made = TestNetwork(HOSTS, tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def test_postgres(test_network: TestNetwork, tmp_path: Path) -> Iterator[TestPostgres]:
    server = TestPostgres(
        test_network.launcher("db"), test_network.addresses["db"], tmp_path / "postgres.log"
    )
    try:
        server.start()
        server.create_databases()
        yield server
    finally:
        server.close()


@pytest.fixture
async def cluster(
    test_network: TestNetwork,
    test_postgres: TestPostgres,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    anyio_backend: str,
) -> AsyncIterator[Cluster]:
    """The suite's processes on the test network (not started: the test calls ``start``)."""
    del anyio_backend  # requested so the fixture runs on the test's event loop
    harness = Harness(tmp_path)
    request.node.stash[HARNESS] = harness
    try:
        yield Cluster(test_network, test_postgres, harness)
    finally:
        try:
            await harness.aclose()
        finally:
            harness.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The scenarios' figures at the end of the run (checkouts, recovery times, duplicates)."""
    if FIGURES:
        terminalreporter.section("several hosts: figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
