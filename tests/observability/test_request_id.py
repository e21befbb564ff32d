"""X-Request-ID on every response of every service: a valid one is echoed, otherwise one is generated."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from servicekit.app import create_service_app
from servicekit.observability import install_observability
from tests.suite import Suite, checkout_body, running_suite

pytestmark = pytest.mark.anyio
SERVICES = ("orchestrator", "warehouse", "rewards", "email")
GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
async def suite(database_url: Callable[[str], str]) -> AsyncIterator[Suite]:
    async with running_suite(database_url) as started:
        await started.stock("SKU-001", 10)
        yield started


@pytest.mark.parametrize("service", SERVICES)
async def test_a_valid_request_id_is_echoed(suite: Suite, service: str) -> None:
    """Each service answers with the X-Request-ID it was sent."""
    client: httpx.AsyncClient = getattr(suite, service)
    response = await client.get("/healthz", headers={"X-Request-ID": "order-1001/try-2"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "order-1001/try-2"


@pytest.mark.parametrize("service", SERVICES)
async def test_a_missing_or_invalid_request_id_is_replaced(suite: Suite, service: str) -> None:
    """Without a valid id (1–128 visible ASCII characters) each response gets a fresh one."""
    client: httpx.AsyncClient = getattr(suite, service)
    for sent in (None, "", "has space", "x" * 129, "tab\tinside"):
        headers = {} if sent is None else {"X-Request-ID": sent}
        first = (await client.get("/healthz", headers=headers)).headers["X-Request-ID"]
        second = (await client.get("/healthz", headers=headers)).headers["X-Request-ID"]
        assert GENERATED.fullmatch(first), sent
        assert GENERATED.fullmatch(second), sent
        assert first != second


async def test_errors_carry_the_request_id_too(suite: Suite) -> None:
    """404, 405, 413, 415 and 422 problem responses carry the id."""
    headers = {"X-Request-ID": "req-errors"}
    answers = [
        await suite.warehouse.get("/nowhere", headers=headers),
        await suite.warehouse.delete("/reservations", headers=headers),
        await suite.warehouse.post("/reservations", content=b"{" * 70_000, headers=headers),
        await suite.rewards.post(
            "/accounts/c-1/transactions", content=b"points=1", headers=headers
        ),
        await suite.orchestrator.post("/checkouts", json={}, headers=headers),
    ]
    assert [a.status_code for a in answers] == [404, 405, 413, 415, 422]
    assert all(a.headers["X-Request-ID"] == "req-errors" for a in answers)


async def test_an_unexpected_error_answers_500_with_the_request_id() -> None:
    """Even a 500 from an unhandled exception (outside every user middleware) carries the id."""
    app = create_service_app(title="Boom")
    install_observability(app, service="boom")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://boom.test") as client:
        response = await client.get("/boom", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "req-500"


async def test_saga_logs_carry_the_request_id_of_the_checkout_request(
    suite: Suite, caplog: pytest.LogCaptureFixture
) -> None:
    """Every saga event of a checkout names the X-Request-ID of the POST that placed it."""
    caplog.set_level(logging.DEBUG)
    response = await suite.orchestrator.post(
        "/checkouts", json=checkout_body(), headers={"X-Request-ID": "req-42"}
    )
    assert response.json()["status"] == "completed"
    events: list[dict[str, Any]] = [
        r.msg for r in caplog.records if r.name == "orchestrator.saga" and isinstance(r.msg, dict)
    ]
    assert len(events) == 7  # started and succeeded for each of 3 steps (debug), then completed
    assert {e["request_id"] for e in events} == {"req-42"}
