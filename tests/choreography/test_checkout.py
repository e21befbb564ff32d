"""The checkout by choreography, in one process against a real RabbitMQ: the services react to
each other's events, the orchestrator only records the checkout and reads the events."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import BrokerUnderTest
from tests.suite import checkout_body, running_suite

pytestmark = pytest.mark.anyio


async def test_a_checkout_completes_with_the_effects_of_orchestration(
    database_url: Any, broker: BrokerUnderTest
) -> None:
    async with running_suite(database_url, everywhere=broker.settings) as suite:
        await suite.stock("SKU-001", 10)
        response = await suite.orchestrator.post("/checkouts", json=checkout_body())
        assert response.status_code == 201, response.text
        checkout = response.json()
        assert checkout["coordination"] == "choreography"
        assert checkout["status"] == "completed"
        assert [(s["name"], s["status"]) for s in checkout["steps"]] == [
            ("warehouse", "succeeded"),
            ("rewards", "succeeded"),
            ("email", "succeeded"),
        ]
        assert (await suite.inventory("SKU-001"))["reserved"] == 2
        assert await suite.balance("c-42") == 39
        emails = await suite.emails("ada@example.com")
        assert [e["template"] for e in emails] == ["order_confirmation"]
