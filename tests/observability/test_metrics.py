"""/metrics on every service: HTTP server metrics, and the orchestrator's checkout_ and step_ families."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from email_service.main import create_app as create_email_app
from email_service.settings import Settings as EmailSettings
from tests.faults import faulty_suite
from tests.observability.conftest import metric, scrape
from tests.suite import Suite, checkout_body, running_suite
from warehouse_service.main import create_app as create_warehouse_app
from warehouse_service.settings import Settings as WarehouseSettings

pytestmark = pytest.mark.anyio


@pytest.fixture
async def suite(database_url: Callable[[str], str]) -> AsyncIterator[Suite]:
    async with running_suite(database_url) as started:
        await started.stock("SKU-001", 10)
        await started.stock("SKU-SOLDOUT", 0)
        yield started


async def test_checkouts_are_counted_by_final_status_and_steps_timed_by_outcome(
    suite: Suite,
) -> None:
    """A member's checkout and a sold-out one: completed=1, failed=1, one duration per step call."""
    placed = await suite.orchestrator.post("/checkouts", json=checkout_body())
    sold_out = await suite.orchestrator.post(
        "/checkouts",
        json=checkout_body(items=[{"sku": "SKU-SOLDOUT", "quantity": 1, "unit_price": "9.99"}]),
    )
    assert placed.json()["status"] == "completed"
    assert sold_out.json()["status"] == "failed"

    text = await scrape(suite.orchestrator)
    assert metric(text, "checkout_finished_total", status="completed") == 1
    assert metric(text, "checkout_finished_total", status="failed") == 1
    assert metric(text, "checkout_in_flight") == 0
    assert metric(text, "checkout_parked_total") == 0
    duration = "step_duration_seconds_count"
    assert metric(text, duration, step="warehouse", outcome="succeeded") == 1
    assert metric(text, duration, step="warehouse", outcome="refused") == 1
    assert metric(text, duration, step="rewards", outcome="succeeded") == 1
    assert metric(text, duration, step="email", outcome="succeeded") == 1
    assert metric(text, "step_duration_seconds_sum", step="email", outcome="succeeded") > 0
    # Nothing was retried or undone: the sold-out checkout failed at its first step.
    assert metric(text, "step_retries_total") is None
    assert metric(text, "step_compensations_total") is None


async def test_retries_and_compensations_are_counted_per_step(
    database_url: Callable[[str], str],
) -> None:
    """Two 503s from the warehouse are two retries; a refusal by rewards compensates the warehouse."""
    async with faulty_suite(database_url) as (suite, faults):
        faults["warehouse"].add("POST", "/reservations", "status", status=503, times=2)
        faults["rewards"].add("POST", "/accounts/*/transactions", "status", status=422)
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()
        text = await scrape(suite.orchestrator)

    assert checkout["status"] == "failed"
    assert [s["status"] for s in checkout["steps"]] == ["compensated", "failed", "skipped"]
    duration = "step_duration_seconds_count"
    assert metric(text, "step_retries_total", step="warehouse") == 2
    assert metric(text, duration, step="warehouse", outcome="transient") == 2
    assert metric(text, duration, step="warehouse", outcome="succeeded") == 1
    assert metric(text, duration, step="rewards", outcome="refused") == 1
    assert metric(text, duration, step="warehouse", outcome="compensated") == 1
    assert metric(text, "step_compensations_total", step="warehouse") == 1
    assert metric(text, "step_compensations_total", step="rewards") is None
    assert metric(text, "checkout_finished_total", status="failed") == 1


async def test_every_service_serves_its_http_metrics(suite: Suite) -> None:
    """After a checkout each service counts and times its requests by route template, not by path."""
    await suite.orchestrator.post("/checkouts", json=checkout_body())

    routes: dict[str, tuple[httpx.AsyncClient, str, str]] = {
        "orchestrator": (suite.orchestrator, "POST", "/checkouts"),
        "warehouse": (suite.warehouse, "POST", "/reservations"),
        "rewards": (suite.rewards, "POST", "/accounts/{customer_id}/transactions"),
        "email": (suite.email, "POST", "/emails"),
    }
    for name, (client, method, handler) in routes.items():
        await client.get("/metrics")  # scrapes are not counted
        text = await scrape(client)
        labels: dict[str, Any] = {"handler": handler, "method": method}
        assert metric(text, "http_requests_total", **labels, status="2xx") == 1, name
        assert metric(text, "http_request_duration_seconds_count", **labels) == 1, name
        assert metric(text, "http_requests_total", handler="/metrics") is None, name
        assert metric(text, "process_cpu_seconds_total") is not None, name
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert "/metrics" not in paths, name
    text = await scrape(suite.orchestrator)
    assert metric(text, "checkout_finished_total", status="completed") == 1


async def test_apps_in_one_process_keep_separate_registries(tmp_path: Any) -> None:
    """Two warehouse apps and an email app in one process: no clash, each counts its own requests."""
    apps = [
        create_warehouse_app(WarehouseSettings(database_url=f"sqlite:///{tmp_path}/a.db")),
        create_warehouse_app(WarehouseSettings(database_url=f"sqlite:///{tmp_path}/b.db")),
        create_email_app(EmailSettings(database_url=f"sqlite:///{tmp_path}/c.db")),
    ]
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app.test")
        for app in apps
    ]
    for count, client in enumerate(clients, start=1):
        for _ in range(count):
            assert (await client.get("/healthz")).status_code == 200
    for count, client in enumerate(clients, start=1):
        text = await scrape(client)
        assert metric(text, "http_requests_total", handler="/healthz") == count
        await client.aclose()


async def test_steps_run_at_once_are_each_timed_and_the_checkout_counted_once(
    database_url: Callable[[str], str],
) -> None:
    """`warehouse,rewards+email`: one finished checkout, one duration per step, one retry of email."""
    async with faulty_suite(database_url, checkout_steps="warehouse,rewards+email") as (
        suite,
        faults,
    ):
        faults["email"].add("POST", "/emails", "status", status=503)
        placed = await suite.orchestrator.post("/checkouts", json=checkout_body())
        assert placed.json()["status"] == "completed"

        text = await scrape(suite.orchestrator)
    assert metric(text, "checkout_finished_total", status="completed") == 1
    assert metric(text, "checkout_in_flight") == 0
    duration = "step_duration_seconds_count"
    for step in ("warehouse", "rewards", "email"):
        assert metric(text, duration, step=step, outcome="succeeded") == 1
    assert metric(text, duration, step="email", outcome="transient") == 1
    assert metric(text, "step_retries_total", step="email") == 1
    assert metric(text, "step_retries_total", step="rewards") is None
