"""The invariant checker of ``tests/invariants.py``, in-process: silent on a sound mix of checkouts,
loud on every kind of broken state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from tests.faults import faulty_suite
from tests.invariants import check_invariants
from tests.suite import Suite, checkout_body

pytestmark = pytest.mark.anyio


STOCK = {"SKU-001": 10, "SKU-002": 5, "SKU-SOLDOUT": 0}


async def place(suite: Suite, **body: Any) -> dict[str, Any]:
    response = await suite.orchestrator.post("/checkouts", json=checkout_body(**body))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def violations(suite: Suite, **options: Any) -> list[str]:
    return await check_invariants(
        suite.orchestrator, suite.warehouse, suite.rewards, suite.email, **options
    )


@pytest.mark.parametrize(
    "order", ["warehouse,rewards,email", "rewards,warehouse,email", "email,warehouse,rewards"]
)
async def test_a_mix_of_checkouts_and_faults_keeps_every_invariant(
    database_url: Callable[[str], str], order: str
) -> None:
    """Members, non-members, sold-out lines and transient faults, in any step order: no violation."""
    async with faulty_suite(database_url, stock=STOCK, checkout_steps=order) as (suite, faults):
        faults["warehouse"].add("POST", "/reservations", "lose_answer")
        faults["rewards"].add("POST", "/checkouts/*/void", "lose_answer")
        faults["email"].add("POST", "/emails", "status", status=503, times=2)
        placed = [
            await place(suite, customer_id="m-1", email="m1@example.com"),
            await place(suite, customer_id="n-1", email="n1@example.com", member=False),
            await place(
                suite,
                customer_id="m-2",
                email="m2@example.com",
                items=[
                    {"sku": "SKU-002", "quantity": 1, "unit_price": "0.99"},
                    {"sku": "SKU-001", "quantity": 3, "unit_price": "5.00"},
                ],
            ),
            await place(
                suite,
                customer_id="m-1",
                email="m1@example.com",
                items=[
                    {"sku": "SKU-001", "quantity": 1, "unit_price": "10.00"},
                    {"sku": "SKU-SOLDOUT", "quantity": 1, "unit_price": "10.00"},
                ],
            ),
            await place(
                suite,
                customer_id="n-2",
                email="n2@example.com",
                member=False,
                items=[{"sku": "SKU-002", "quantity": 50, "unit_price": "1.00"}],
            ),
        ]

        assert [c["status"] for c in placed] == [
            "completed",
            "completed",
            "completed",
            "failed",
            "failed",
        ]
        assert await violations(suite) == []
        assert await violations(suite, checkout_ids=[c["id"] for c in placed]) == []
        assert (await suite.inventory("SKU-001"))["reserved"] == 7
        assert await suite.balance("m-1") == 39


async def test_the_checker_reports_every_kind_of_broken_state(
    database_url: Callable[[str], str],
) -> None:
    """Stray effects written straight to the services are each named by the checker."""
    async with faulty_suite(database_url, stock=STOCK) as (suite, _):
        completed = await place(suite)
        failed = await place(
            suite, items=[{"sku": "SKU-SOLDOUT", "quantity": 1, "unit_price": "1"}]
        )
        assert (completed["status"], failed["status"]) == ("completed", "failed")
        assert await violations(suite) == []

        # An orphan reservation for the failed checkout: the stock leak a lost compensation leaves.
        response = await suite.warehouse.post(
            "/reservations",
            json={"checkout_id": failed["id"], "items": [{"sku": "SKU-001", "quantity": 1}]},
        )
        assert response.status_code == 201, response.text
        found = await violations(suite)
        assert found == [
            f"failed checkout {failed['id']}: 1 reservations still reserved ({[response.json()['id']]})"
        ]

        # A cancellation for a completed checkout, and points nobody's checkout earned.
        response = await suite.email.post(
            "/emails",
            json={
                "to": "ada@example.com",
                "template": "order_cancelled",
                "checkout_id": completed["id"],
                "context": {},
            },
        )
        assert response.status_code == 201, response.text
        response = await suite.rewards.post(
            "/accounts/c-42/transactions", json={"checkout_id": "stray", "points": 5}
        )
        assert response.status_code == 201, response.text
        # Stock held for a checkout the orchestrator never saw.
        response = await suite.warehouse.post(
            "/reservations",
            json={"checkout_id": "stray", "items": [{"sku": "SKU-001", "quantity": 4}]},
        )
        assert response.status_code == 201, response.text

        found = await violations(suite)
        assert len(found) == 4, found
        assert f"completed checkout {completed['id']}: an order_cancelled email was sent" in found
        assert (
            "customer c-42: balance 44 (GET answered 200), but the ledger of these checkouts sums to 39"
            in found
        )
        assert (
            "sku SKU-001: 7 units reserved, but the active reservations of these checkouts hold 3"
            in found
        )
        # Without ownership of skus and customers, only the per-checkout rules apply.
        assert len(await violations(suite, exclusive=False)) == 2


async def test_the_checker_reports_checkouts_that_never_end(
    database_url: Callable[[str], str],
) -> None:
    """A checkout still running at the deadline is a violation naming its steps."""
    async with faulty_suite(database_url, stock=STOCK, shutdown_grace_s=0) as (suite, faults):
        faults["email"].add("POST", "/emails", "delay", delay=5)
        response = await suite.orchestrator.post(
            "/checkouts", json=checkout_body(), headers={"Prefer": "respond-async"}
        )
        assert response.status_code == 202, response.text
        checkout_id = response.json()["id"]
        with anyio.fail_after(10):
            while True:
                checkout = (await suite.orchestrator.get(f"/checkouts/{checkout_id}")).json()
                if checkout["steps"][-1]["status"] == "running":
                    break
                await anyio.sleep(0.02)

        found = await violations(suite, wait_s=0.3)

        assert len(found) == 1, found
        assert found[0].startswith(f"checkout {checkout_id} is still running after 0.3 s")
        assert "email=running" in found[0]
        missing = await violations(suite, checkout_ids=["0" * 32], wait_s=0.1)
        assert missing == [f"checkout {'0' * 32} does not exist (GET answered 404)"]
