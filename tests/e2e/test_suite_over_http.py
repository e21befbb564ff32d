"""The four services as real processes talking HTTP on 127.0.0.1: a checkout end to end."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest

from tests.e2e.harness import SERVICES, TEST_BOUND_S, Harness
from tests.invariants import check_invariants, wait_until_terminal
from tests.suite import checkout_body

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_suite_over_http(harness: Harness, database_url: Callable[[str], str]) -> None:
    """A member's checkout completes over real HTTP; every service shows its one effect."""
    with anyio.fail_after(TEST_BOUND_S):
        services = harness.services(
            {name: database_url(name) for name in SERVICES}, seed_demo_catalog=True
        )
        orchestrator = harness.orchestrator(database_url("orchestrator"), services)
        await harness.start_all(orchestrator, *services.values())
        api, warehouse, rewards, email = (
            harness.client(p) for p in (orchestrator, *services.values())
        )

        response = await api.post(
            "/checkouts", json=checkout_body(customer_id="c-e2e", email="e2e@example.com")
        )
        assert response.status_code == 201, response.text
        checkout = response.json()
        assert response.headers["Location"] == f"/checkouts/{checkout['id']}"
        assert checkout["status"] == "completed"
        assert checkout["total"] == "39.98"
        assert checkout["points"] == 39
        assert [(s["name"], s["status"], s["attempts"]) for s in checkout["steps"]] == [
            ("warehouse", "succeeded", 1),
            ("rewards", "succeeded", 1),
            ("email", "succeeded", 1),
        ]
        assert (await api.get(f"/checkouts/{checkout['id']}")).json() == checkout

        reservations = (
            await warehouse.get("/reservations", params={"checkout_id": checkout["id"]})
        ).json()["items"]
        assert [(r["status"], r["items"]) for r in reservations] == [
            ("reserved", [{"sku": "SKU-001", "quantity": 2}])
        ]
        assert (await warehouse.get("/inventory/SKU-001")).json() == {
            "sku": "SKU-001",
            "on_hand": 100,
            "reserved": 2,
            "available": 98,
        }
        assert (await rewards.get("/accounts/c-e2e")).json() == {
            "customer_id": "c-e2e",
            "balance": 39,
        }
        ledger = (await rewards.get("/transactions", params={"checkout_id": checkout["id"]})).json()
        assert [(t["kind"], t["points"]) for t in ledger["items"]] == [("credit", 39)]
        messages = (await email.get("/emails", params={"to": "e2e@example.com"})).json()["items"]
        assert [(m["template"], m["checkout_id"]) for m in messages] == [
            ("order_confirmation", checkout["id"])
        ]

        sold_out = checkout_body(
            customer_id="c-e2e",
            email="e2e@example.com",
            items=[{"sku": "SKU-SOLDOUT", "quantity": 1, "unit_price": "5.00"}],
        )
        response = await api.post("/checkouts", json=sold_out)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "failed"

        assert await check_invariants(api, warehouse, rewards, email) == []


async def _small_suite(harness: Harness, tmp_path: Path, **knobs: str) -> list[httpx.AsyncClient]:
    services = harness.services({s: f"sqlite:///{tmp_path / s}.db" for s in SERVICES})
    orchestrator = harness.orchestrator(f"sqlite:///{tmp_path}/orchestrator.db", services, **knobs)
    await harness.start_all(orchestrator, *services.values())
    return [harness.client(p) for p in (orchestrator, *services.values())]


async def test_a_checkout_repeating_a_sku_beyond_1000_units_completes(
    harness: Harness, tmp_path: Path
) -> None:
    """Two lines of 600 units of one sku (each line valid) reserve 1200 units and complete."""
    with anyio.fail_after(TEST_BOUND_S):
        api, warehouse, rewards, email = await _small_suite(
            harness, tmp_path, CHECKOUT_DEADLINE_S="3"
        )
        response = await warehouse.put("/inventory/SKU-BULK", json={"on_hand": 5000})
        assert response.status_code == 201, response.text
        line = {"sku": "SKU-BULK", "quantity": 600, "unit_price": "1.00"}
        response = await api.post("/checkouts", json=checkout_body(items=[line, line]))
        assert response.status_code in (201, 202), response.text

        [checkout] = (await wait_until_terminal(api, timeout_s=30)).values()
        assert checkout is not None
        assert checkout["status"] == "completed", checkout["error"]
        assert await check_invariants(api, warehouse, rewards, email) == []


@pytest.mark.parametrize("customer_id", ["team/ada", ".."])
async def test_a_customer_id_a_url_path_cannot_carry_is_refused(
    harness: Harness, tmp_path: Path, customer_id: str
) -> None:
    """An id with '/' or a dot segment cannot travel to rewards in a URL: 422 naming it, nothing stored."""
    with anyio.fail_after(TEST_BOUND_S):
        api, warehouse, _rewards, _email = await _small_suite(harness, tmp_path)
        response = await warehouse.put("/inventory/SKU-001", json={"on_hand": 10})
        assert response.status_code == 201, response.text
        response = await api.post("/checkouts", json=checkout_body(customer_id=customer_id))
        assert response.status_code == 422, response.text
        assert ["body", "customer", "id"] in [e["loc"] for e in response.json()["errors"]]
        assert (await api.get("/checkouts")).json()["items"] == []
        assert (await warehouse.get("/inventory/SKU-001")).json()["reserved"] == 0
