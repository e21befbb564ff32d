"""Many checkouts at once against little stock: nothing oversold, every checkout accounted for."""

from __future__ import annotations

import anyio
import httpx
import pytest

from tests.suite import Suite, checkout_body

pytestmark = pytest.mark.anyio


async def test_200_checkouts_on_50_units(suite: Suite) -> None:
    """200 concurrent one-unit checkouts on 50 units: exactly 50 complete, 150 fail, stock never negative."""
    await suite.stock("SKU-RACE", 50)
    answers: list[httpx.Response] = []

    async def buy(n: int) -> None:
        body = checkout_body(
            customer_id=f"racer-{n}",
            email=f"racer{n}@example.com",
            items=[{"sku": "SKU-RACE", "quantity": 1, "unit_price": "1.50"}],
        )
        answers.append(await suite.orchestrator.post("/checkouts", json=body))

    async with anyio.create_task_group() as group:
        for n in range(200):
            group.start_soon(buy, n)

    assert {a.status_code for a in answers} == {201}
    statuses = [a.json()["status"] for a in answers]
    assert statuses.count("completed") == 50
    assert statuses.count("failed") == 150
    assert await suite.inventory("SKU-RACE") == {
        "sku": "SKU-RACE",
        "on_hand": 50,
        "reserved": 50,
        "available": 0,
    }
    winners = [a.json() for a in answers if a.json()["status"] == "completed"]
    for checkout in winners[:5]:
        assert await suite.balance(checkout["customer"]["id"]) == 1
        assert len(await suite.emails(checkout["customer"]["email"])) == 1
    for checkout in [a.json() for a in answers if a.json()["status"] == "failed"][:5]:
        assert await suite.balance(checkout["customer"]["id"]) is None
        assert await suite.emails(checkout["customer"]["email"]) == []
