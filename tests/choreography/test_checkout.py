"""The checkout by choreography, in one process against a real RabbitMQ: the services react to
each other's events, the orchestrator only records the checkout and reads the events."""

from __future__ import annotations

from typing import Any

import pytest

from servicekit.events.dead_letters import dead_letters as list_dead_letters
from tests.choreography.helpers import consumed, dead_letters, eventually, publish, tap
from tests.conftest import BrokerUnderTest
from tests.suite import checkout_body, running_suite
from tests.support import assert_problem, step, wait_finished
from warehouse_service import reactions as warehouse_reactions

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


async def test_a_sold_out_checkout_in_rewards_first_order_fails_with_the_points_reversed(
    database_url: Any, broker: BrokerUnderTest
) -> None:
    async with running_suite(
        database_url, everywhere=broker.settings, checkout_steps="rewards,warehouse,email"
    ) as suite:
        await suite.stock("SKU-001", 1)
        response = await suite.orchestrator.post("/checkouts", json=checkout_body())
        assert response.status_code == 201, response.text
        checkout = response.json()
        assert checkout["status"] == "failed", checkout
        rewards, warehouse, email = (
            step(checkout, name) for name in ("rewards", "warehouse", "email")
        )
        assert rewards["status"] == "compensated"
        assert rewards["compensated_at"] is not None
        assert rewards["result"]["reversal_id"] is not None
        assert warehouse["status"] == "failed"
        assert warehouse["http_status"] == 409
        assert warehouse["error"]["kind"] == "StepRefusedError"
        assert email["status"] == "skipped"
        assert checkout["error"]["step"] == "warehouse"
        assert checkout["points"] == 0
        # The credit was reversed: the balance is back to nothing, with both entries kept.
        assert await suite.balance("c-42") == 0
        ledger = await suite.rewards.get("/transactions", params={"checkout_id": checkout["id"]})
        assert sorted(t["kind"] for t in ledger.json()["items"]) == ["credit", "reversal"]
        assert (await suite.inventory("SKU-001"))["reserved"] == 0
        assert await suite.emails("ada@example.com") == []


async def test_a_refusal_of_the_first_step_fails_at_once_and_touches_nothing_else(
    database_url: Any, broker: BrokerUnderTest
) -> None:
    async with running_suite(database_url, everywhere=broker.settings) as suite:
        await suite.stock("SKU-001", 1)
        response = await suite.orchestrator.post("/checkouts", json=checkout_body())
        checkout = response.json()
        assert response.status_code == 201, checkout
        assert checkout["status"] == "failed"
        assert [(s["name"], s["status"]) for s in checkout["steps"]] == [
            ("warehouse", "failed"),
            ("rewards", "skipped"),
            ("email", "skipped"),
        ]
        assert await suite.balance("c-42") is None
        assert await suite.emails("ada@example.com") == []


async def test_a_refusal_after_the_email_sends_the_cancellation_and_undoes_the_rest(
    database_url: Any, broker: BrokerUnderTest
) -> None:
    """Order email,rewards,warehouse, sold out: the refusal travels back through rewards (points
    reversed) to the email service, which follows its confirmation with a cancellation."""
    async with running_suite(
        database_url, everywhere=broker.settings, checkout_steps="email,rewards,warehouse"
    ) as suite:
        await suite.stock("SKU-001", 1)
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()
        assert checkout["status"] == "failed", checkout
        assert [(s["name"], s["status"]) for s in checkout["steps"]] == [
            ("email", "compensated"),
            ("rewards", "compensated"),
            ("warehouse", "failed"),
        ]
        templates = sorted(e["template"] for e in await suite.emails("ada@example.com"))
        assert templates == ["order_cancelled", "order_confirmation"]
        assert await suite.balance("c-42") == 0
        email = step(checkout, "email")
        assert email["result"]["cancellation_email_id"] is not None


async def test_a_replayed_idempotency_key_changes_nothing(
    database_url: Any, broker: BrokerUnderTest
) -> None:
    async with running_suite(database_url, everywhere=broker.settings) as suite:
        await suite.stock("SKU-001", 10)
        headers = {"Idempotency-Key": "order-1"}
        first = await suite.orchestrator.post("/checkouts", json=checkout_body(), headers=headers)
        again = await suite.orchestrator.post("/checkouts", json=checkout_body(), headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        listed = (await suite.orchestrator.get("/checkouts")).json()["items"]
        assert [c["id"] for c in listed] == [first.json()["id"]]
        assert (await suite.inventory("SKU-001"))["reserved"] == 2
        assert await suite.balance("c-42") == 39
        assert len(await suite.emails("ada@example.com")) == 1


async def test_a_non_member_is_skipped_by_rewards(
    database_url: Any, broker: BrokerUnderTest
) -> None:
    async with running_suite(database_url, everywhere=broker.settings) as suite:
        await suite.stock("SKU-001", 10)
        response = await suite.orchestrator.post("/checkouts", json=checkout_body(member=False))
        checkout = response.json()
        assert checkout["status"] == "completed", checkout
        assert step(checkout, "rewards")["status"] == "skipped"
        assert step(checkout, "email")["status"] == "succeeded"
        assert await suite.balance("c-42") is None


async def test_respond_async_then_the_list_filters_by_coordination(
    database_url: Any, broker: BrokerUnderTest
) -> None:
    async with running_suite(database_url, everywhere=broker.settings) as suite:
        await suite.stock("SKU-001", 10)
        response = await suite.orchestrator.post(
            "/checkouts", json=checkout_body(), headers={"Prefer": "respond-async"}
        )
        assert response.status_code == 202, response.text
        done = await wait_finished(suite.orchestrator, response.headers["Location"], "completed")
        assert done["waiting"] is None
        for mode, expected in (("choreography", [done["id"]]), ("orchestration", [])):
            page = await suite.orchestrator.get("/checkouts", params={"coordination": mode})
            assert [c["id"] for c in page.json()["items"]] == expected
        bad = await suite.orchestrator.get("/checkouts", params={"coordination": "telepathy"})
        assert_problem(bad, 422)
        for action in ("retry", "cancel"):
            refused = await suite.orchestrator.post(f"/checkouts/{done['id']}/{action}")
            assert_problem(refused, 409, type="urn:checkout-suite:problem:checkout-choreographed")


async def test_every_event_delivered_twice_applies_each_effect_once(
    database_url: Any, broker: BrokerUnderTest
) -> None:
    async with running_suite(database_url, everywhere=broker.settings) as suite:
        await suite.stock("SKU-001", 10)
        async with tap(broker) as taken:
            first = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()
            assert first["status"] == "completed"
            await eventually(lambda: _at_least(taken, 4))
        assert [t.routing_key for t in taken] == [
            "checkout.placed",
            "step.succeeded",
            "step.succeeded",
            "step.succeeded",
        ]
        for message in taken:
            assert message.message_id is not None
            await publish(broker, message.routing_key, message.body, message.message_id)
        # Each service applied one of those messages, the journal all four: every twin is
        # acknowledged as a duplicate and skipped.
        for client, twins in (
            (suite.warehouse, 1),
            (suite.rewards, 1),
            (suite.email, 1),
            (suite.orchestrator, 4),
        ):
            await eventually(lambda c=client, n=twins: _consumed_at_least(c, "duplicate", n))
            assert await consumed(client, "applied") == twins
        assert (await suite.inventory("SKU-001"))["reserved"] == 2
        assert await suite.balance("c-42") == 39
        assert len(await suite.emails("ada@example.com")) == 1
        again = (await suite.orchestrator.get(f"/checkouts/{first['id']}")).json()
        assert again["steps"] == first["steps"]


async def test_a_message_that_cannot_be_applied_is_dead_lettered_and_the_rest_flows(
    database_url: Any, broker: BrokerUnderTest
) -> None:
    async with running_suite(database_url, everywhere=broker.settings) as suite:
        await suite.stock("SKU-001", 10)
        await publish(broker, "checkout.placed", b"{not json", "poison-1")
        await eventually(lambda: _dead_at_least(broker, 4))  # one copy per consuming queue
        response = await suite.orchestrator.post("/checkouts", json=checkout_body())
        assert response.json()["status"] == "completed"
        assert await dead_letters(broker) == 4


async def _at_least(taken: list[Any], count: int) -> bool:
    return len(taken) >= count


async def _consumed_at_least(client: Any, outcome: str, count: int) -> bool:
    return await consumed(client, outcome) >= count


async def _dead_at_least(broker: BrokerUnderTest, count: int) -> bool:
    return await dead_letters(broker) >= count


async def test_a_reaction_that_keeps_failing_is_dead_lettered_then_replayed_once_fixed(
    database_url: Any, broker: BrokerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warehouse's reaction raises (a bug, a dependency down): after its attempts the
    message waits in the dead-letter queue, the checkout waits at the warehouse; once fixed, a
    replay completes the checkout, and the consumers that saw the message before skip it."""
    reserve = warehouse_reactions.reservations.reserve

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("the warehouse's rules are broken")

    async with running_suite(
        database_url, everywhere=broker.settings, checkout_sync_deadline_s=0.2
    ) as suite:
        await suite.stock("SKU-001", 10)
        monkeypatch.setattr(warehouse_reactions.reservations, "reserve", broken)
        placed = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()
        await eventually(lambda: _dead_at_least(broker, 1), timeout_s=30)
        letters = await list_dead_letters(broker.url, broker.prefix, replay=False, limit=10)
        assert [(d.routing_key, d.checkout_id, d.queue) for d in letters] == [
            ("checkout.placed", placed["id"], f"{broker.prefix}.warehouse")
        ]
        assert await dead_letters(broker) == 1  # listing leaves them there
        waiting = (await suite.orchestrator.get(f"/checkouts/{placed['id']}")).json()
        assert waiting["status"] == "running"
        assert step(waiting, "warehouse")["status"] == "running"

        monkeypatch.setattr(warehouse_reactions.reservations, "reserve", reserve)
        replayed = await list_dead_letters(broker.url, broker.prefix, replay=True, limit=10)
        assert len(replayed) == 1
        done = await wait_finished(
            suite.orchestrator, f"/checkouts/{placed['id']}", "completed", timeout_s=20
        )
        assert step(done, "warehouse")["status"] == "succeeded"
        assert await dead_letters(broker) == 0
        assert (await suite.inventory("SKU-001"))["reserved"] == 2
        # The journal had applied the placed event before: its twin was skipped.
        assert await consumed(suite.orchestrator, "duplicate") == 1
