"""The four services as real processes talking HTTP on 127.0.0.1: a checkout end to end."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from tests.e2e.harness import SERVICES, Harness
from tests.invariants import check_invariants
from tests.suite import checkout_body

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_suite_over_http(harness: Harness, database_url: Callable[[str], str]) -> None:
    """A member's checkout completes over real HTTP; every service shows its one effect."""
    with anyio.fail_after(60):
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
