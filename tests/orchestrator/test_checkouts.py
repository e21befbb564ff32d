"""The saga end to end, in-process: effects are read back from each service's own endpoints."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.faults import FaultyTransport
from tests.suite import Suite, checkout_body, running_suite

pytestmark = pytest.mark.anyio


def steps_of(checkout: dict[str, Any]) -> dict[str, str]:
    return {step["name"]: step["status"] for step in checkout["steps"]}


async def test_member_checkout_reserves_credits_and_emails(suite: Suite) -> None:
    """A member's checkout completes with three succeeded steps and all three effects applied once."""
    response = await suite.orchestrator.post("/checkouts", json=checkout_body())

    assert response.status_code == 201
    checkout = response.json()
    assert response.headers["location"] == f"/checkouts/{checkout['id']}"
    assert checkout["status"] == "completed"
    assert checkout["total"] == "39.98"
    assert checkout["points"] == 39
    assert [s["name"] for s in checkout["steps"]] == ["warehouse", "rewards", "email"]
    assert steps_of(checkout) == {
        "warehouse": "succeeded",
        "rewards": "succeeded",
        "email": "succeeded",
    }
    for step in checkout["steps"]:
        assert step["attempts"] == 1
        assert step["started_at"] <= step["finished_at"]
        assert step["error"] is None
    assert await suite.inventory("SKU-001") == {
        "sku": "SKU-001",
        "on_hand": 10,
        "reserved": 2,
        "available": 8,
    }
    assert await suite.balance("c-42") == 39
    emails = await suite.emails("ada@example.com")
    assert [(e["template"], e["checkout_id"]) for e in emails] == [
        ("order_confirmation", checkout["id"])
    ]
    assert (await suite.orchestrator.get(f"/checkouts/{checkout['id']}")).json() == checkout


async def test_non_member_skips_rewards(suite: Suite) -> None:
    """A non-member's rewards step is skipped: no points, no account, but stock and email as usual."""
    response = await suite.orchestrator.post(
        "/checkouts", json=checkout_body(customer_id="c-7", member=False)
    )

    checkout = response.json()
    assert response.status_code == 201
    assert checkout["status"] == "completed"
    assert checkout["points"] == 0
    assert steps_of(checkout) == {
        "warehouse": "succeeded",
        "rewards": "skipped",
        "email": "succeeded",
    }
    assert await suite.balance("c-7") is None
    assert (await suite.inventory("SKU-001"))["reserved"] == 2
    assert len(await suite.emails("ada@example.com")) == 1


async def test_out_of_stock_fails_without_any_effect(suite: Suite) -> None:
    """A line the warehouse cannot fill fails the checkout: nothing reserved, credited or emailed."""
    items = [
        {"sku": "SKU-001", "quantity": 1, "unit_price": "5"},
        {"sku": "SKU-SOLDOUT", "quantity": 1, "unit_price": "5"},
    ]
    response = await suite.orchestrator.post("/checkouts", json=checkout_body(items=items))

    checkout = response.json()
    assert response.status_code == 201
    assert checkout["status"] == "failed"
    assert steps_of(checkout) == {"warehouse": "failed", "rewards": "skipped", "email": "skipped"}
    warehouse = checkout["steps"][0]
    assert warehouse["http_status"] == 409
    assert "SKU-SOLDOUT" in warehouse["error"]["detail"]
    assert checkout["error"]["step"] == "warehouse"
    assert (await suite.inventory("SKU-001"))["reserved"] == 0
    assert await suite.balance("c-42") is None
    assert await suite.emails("ada@example.com") == []


async def test_unknown_sku_fails_the_checkout(suite: Suite) -> None:
    """An unknown sku is a refusal for good: the checkout fails and the step names the sku."""
    items = [{"sku": "SKU-NOPE", "quantity": 1, "unit_price": "5"}]
    checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body(items=items))).json()

    assert checkout["status"] == "failed"
    assert checkout["steps"][0]["http_status"] == 422
    assert "SKU-NOPE" in checkout["steps"][0]["error"]["detail"]


@pytest.mark.parametrize(
    "order", ["email,warehouse,rewards", "rewards,email,warehouse", "warehouse,email,rewards"]
)
async def test_other_step_orders_complete(database_url: Any, order: str) -> None:
    """Any permutation of the steps completes a member's checkout with the same effects."""
    async with running_suite(database_url, checkout_steps=order) as suite:
        await suite.stock("SKU-001", 10)
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()

        assert checkout["status"] == "completed"
        assert [s["name"] for s in checkout["steps"]] == order.split(",")
        assert set(steps_of(checkout).values()) == {"succeeded"}
        assert (await suite.inventory("SKU-001"))["reserved"] == 2
        assert await suite.balance("c-42") == 39
        assert len(await suite.emails("ada@example.com")) == 1


async def test_refusal_after_credit_reverses_the_points(database_url: Any) -> None:
    """With rewards before the warehouse, an out-of-stock checkout reverses its credit."""
    async with running_suite(database_url, checkout_steps="rewards,warehouse,email") as suite:
        await suite.stock("SKU-SOLDOUT", 0)
        items = [{"sku": "SKU-SOLDOUT", "quantity": 1, "unit_price": "12.50"}]
        checkout = (
            await suite.orchestrator.post("/checkouts", json=checkout_body(items=items))
        ).json()

        assert checkout["status"] == "failed"
        assert steps_of(checkout) == {
            "rewards": "compensated",
            "warehouse": "failed",
            "email": "skipped",
        }
        assert checkout["steps"][0]["compensated_at"] is not None
        assert await suite.balance("c-42") == 0
        assert await suite.emails("ada@example.com") == []


async def test_card_order_cancels_by_email_after_confirming(database_url: Any) -> None:
    """In the card's order (email first) a refusal sends order_cancelled after the confirmation."""
    async with running_suite(database_url, checkout_steps="email,warehouse,rewards") as suite:
        await suite.stock("SKU-SOLDOUT", 0)
        items = [{"sku": "SKU-SOLDOUT", "quantity": 1, "unit_price": "3"}]
        checkout = (
            await suite.orchestrator.post("/checkouts", json=checkout_body(items=items))
        ).json()

        assert checkout["status"] == "failed"
        assert steps_of(checkout) == {
            "email": "compensated",
            "warehouse": "failed",
            "rewards": "skipped",
        }
        templates = sorted(e["template"] for e in await suite.emails("ada@example.com"))
        assert templates == ["order_cancelled", "order_confirmation"]
        assert await suite.balance("c-42") is None


async def test_reservation_is_released_when_a_later_step_is_refused(database_url: Any) -> None:
    """A refusal after the reservation releases it: stock returns and the step reads compensated."""
    faults: dict[str, FaultyTransport] = {}

    def wrap(name: str, transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        faults[name] = FaultyTransport(transport)
        return faults[name]

    async with running_suite(database_url, wrap=wrap) as suite:
        await suite.stock("SKU-001", 10)
        faults["rewards"].add("POST", "/accounts/*/transactions", "status", status=403)
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()

        assert checkout["status"] == "failed", checkout
        assert steps_of(checkout) == {
            "warehouse": "compensated",
            "rewards": "failed",
            "email": "skipped",
        }
        assert checkout["steps"][1]["http_status"] == 403
        assert (await suite.inventory("SKU-001"))["reserved"] == 0
        assert await suite.balance("c-42") is None
        assert await suite.emails("ada@example.com") == []


async def test_the_largest_order_allowed_completes(suite: Suite) -> None:
    """100 lines of 1000 units at 1,000,000.00 completes: totals and points fit in 64 bits."""
    items = [{"sku": f"BIG-{n:03d}", "quantity": 1000, "unit_price": "1000000"} for n in range(100)]
    for item in items:
        await suite.stock(item["sku"], 1000)
    response = await suite.orchestrator.post("/checkouts", json=checkout_body(items=items))

    checkout = response.json()
    assert response.status_code == 201, checkout
    assert checkout["status"] == "completed", checkout
    assert checkout["total"] == "100000000000.00"
    assert checkout["points"] == 100_000_000_000
    assert await suite.balance("c-42") == 100_000_000_000
