"""Real concurrency: the warehouse under uvicorn, hit by many simultaneous HTTP requests.

In-process tests share one event loop; here a uvicorn subprocess serves the requests from its
thread pool, so database transactions genuinely overlap (on SQLite and on PostgreSQL).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.support import assert_problem
from tests.warehouse_service.helpers import levels, stock

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

STARTUP_TIMEOUT_S = 15


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serving_warehouse(database_url: str, workdir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Run the warehouse with uvicorn as a subprocess and yield a client of it; stop it after."""
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("SEED_DEMO_CATALOG", None)
    log = workdir / "uvicorn.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "warehouse_service.main:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=workdir,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            timeout=httpx.Timeout(60),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        ) as client:
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            while True:
                if process.poll() is not None:
                    pytest.fail(f"uvicorn exited with {process.returncode}:\n{log.read_text()}")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"the warehouse was not ready in time:\n{log.read_text()}")
                await anyio.sleep(0.05)
            yield client
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _all_at_once(
    client: httpx.AsyncClient, requests: list[tuple[str, str, dict[str, Any] | None]]
) -> list[httpx.Response]:
    """Send every ``(method, path, json)`` request concurrently; answers in request order."""
    responses: list[httpx.Response | None] = [None] * len(requests)

    async def send(index: int, method: str, path: str, body: dict[str, Any] | None) -> None:
        responses[index] = await client.request(method, path, json=body)

    async with anyio.create_task_group() as group:
        for index, (method, path, body) in enumerate(requests):
            group.start_soon(send, index, method, path, body)
    assert all(r is not None for r in responses)
    return [r for r in responses if r is not None]


@pytest.fixture
async def warehouse(
    database_url: Callable[[str], str], tmp_path: Path, anyio_backend: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a warehouse served by a uvicorn subprocess on a fresh database."""
    del anyio_backend  # requested so the fixture runs on the test's event loop
    async with serving_warehouse(database_url("warehouse"), tmp_path) as client:
        yield client


async def test_concurrent_reservations_never_oversell(warehouse: httpx.AsyncClient) -> None:
    """200 simultaneous 1-unit reservations of 50 units: exactly 50 succeed, 150 get 409, none oversold."""
    await stock(warehouse, "SKU-HOT", 50)
    samples: list[tuple[int, int, int]] = []
    storm_over = anyio.Event()

    async def sample() -> None:
        """Read the stock while the storm rages: it must be consistent at every moment."""
        while not storm_over.is_set():
            samples.append(await levels(warehouse, "SKU-HOT"))
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as group:
        group.start_soon(sample)
        responses = await _all_at_once(
            warehouse,
            [
                (
                    "POST",
                    "/reservations",
                    {"checkout_id": f"c-{i}", "items": [{"sku": "SKU-HOT", "quantity": 1}]},
                )
                for i in range(200)
            ],
        )
        storm_over.set()

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 50, 409: 150}, statuses
    for response in responses:
        if response.status_code == 409:
            assert "SKU-HOT" in assert_problem(response, 409)["detail"]
    winners = {r.json()["checkout_id"] for r in responses if r.status_code == 201}
    assert len(winners) == 50
    assert await levels(warehouse, "SKU-HOT") == (50, 50, 0)
    assert samples
    for on_hand, reserved, available in samples:
        assert on_hand == 50
        assert 0 <= reserved <= 50
        assert available >= 0
    listed = await warehouse.get("/reservations", params={"checkout_id": sorted(winners)[0]})
    assert len(listed.json()["items"]) == 1


async def test_concurrent_multi_line_reservations_in_opposite_orders(
    warehouse: httpx.AsyncClient,
) -> None:
    """Concurrent two-sku reservations listing the skus in opposite orders neither deadlock nor oversell."""
    await stock(warehouse, "SKU-X", 30)
    await stock(warehouse, "SKU-Y", 40)
    forward = [{"sku": "SKU-X", "quantity": 1}, {"sku": "SKU-Y", "quantity": 1}]
    backward = [{"sku": "SKU-Y", "quantity": 1}, {"sku": "SKU-X", "quantity": 1}]

    with anyio.fail_after(60):
        responses = await _all_at_once(
            warehouse,
            [
                (
                    "POST",
                    "/reservations",
                    {"checkout_id": f"c-{i}", "items": forward if i % 2 else backward},
                )
                for i in range(100)
            ],
        )

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 30, 409: 70}, statuses
    for response in responses:
        if response.status_code == 409:
            assert "SKU-X" in assert_problem(response, 409)["detail"]
    # SKU-X ran out first; the refused checkouts hold no SKU-Y either.
    assert await levels(warehouse, "SKU-X") == (30, 30, 0)
    assert await levels(warehouse, "SKU-Y") == (40, 30, 10)


async def test_concurrent_releases_return_stock_once(warehouse: httpx.AsyncClient) -> None:
    """Twenty simultaneous releases of one reservation give its units back exactly once."""
    await stock(warehouse, "SKU-R", 10)
    kept = await warehouse.post(
        "/reservations", json={"checkout_id": "c-kept", "items": [{"sku": "SKU-R", "quantity": 3}]}
    )
    released = await warehouse.post(
        "/reservations", json={"checkout_id": "c-gone", "items": [{"sku": "SKU-R", "quantity": 4}]}
    )
    assert kept.status_code == released.status_code == 201
    url = f"/reservations/{released.json()['id']}/release"

    responses = await _all_at_once(warehouse, [("POST", url, None)] * 20)

    assert Counter(r.status_code for r in responses) == {200: 20}
    assert {r.json()["status"] for r in responses} == {"released"}
    assert await levels(warehouse, "SKU-R") == (10, 3, 7)


async def test_concurrent_twins_of_one_checkout_reserve_once(warehouse: httpx.AsyncClient) -> None:
    """Twenty simultaneous identical reservations for one checkout: one 201, the rest 200, stock taken once."""
    await stock(warehouse, "SKU-T", 10)
    body = {"checkout_id": "c-twin", "items": [{"sku": "SKU-T", "quantity": 2}]}

    responses = await _all_at_once(warehouse, [("POST", "/reservations", body)] * 20)

    assert Counter(r.status_code for r in responses) == {201: 1, 200: 19}, [
        r.text for r in responses if r.status_code >= 300
    ]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await levels(warehouse, "SKU-T") == (10, 2, 8)


async def test_concurrent_first_stocking_of_a_sku(warehouse: httpx.AsyncClient) -> None:
    """Simultaneous PUTs stocking a new sku all succeed: one creates it (201), the rest set it (200)."""
    responses = await _all_at_once(warehouse, [("PUT", "/inventory/SKU-NEW", {"on_hand": 7})] * 20)

    assert Counter(r.status_code for r in responses) == {201: 1, 200: 19}, [
        r.text for r in responses if r.status_code >= 300
    ]
    assert await levels(warehouse, "SKU-NEW") == (7, 0, 7)
