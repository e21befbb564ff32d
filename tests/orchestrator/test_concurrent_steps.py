"""Concurrent groups in-process, on SQLite and PostgreSQL: steps after the go/no-go step at once.

Latency is added in front of a service by the fault injector (``delay``), so the overlap of two
steps is read from their recorded times, and the effects from each service's own endpoints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import anyio
import pytest

from tests.faults import faulty_suite
from tests.invariants import check_invariants
from tests.suite import Suite, checkout_body
from tests.support import wait_finished

pytestmark = pytest.mark.anyio

CREDIT = "/accounts/*/transactions"
SOLD_OUT = [{"sku": "SKU-SOLDOUT", "quantity": 1, "unit_price": "12.50"}]


def by_name(checkout: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in checkout["steps"]}


def at(moment: str) -> datetime:
    return datetime.fromisoformat(moment)


def overlap(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether both steps started before either finished."""
    starts = max(at(first["started_at"]), at(second["started_at"]))
    return starts < min(at(first["finished_at"]), at(second["finished_at"]))


async def violations(suite: Suite) -> list[str]:
    return await check_invariants(suite.orchestrator, suite.warehouse, suite.rewards, suite.email)


async def test_rewards_and_email_run_at_once_after_the_reservation(
    database_url: Callable[[str], str],
) -> None:
    """With 1 s in front of rewards and of email, `warehouse,rewards+email` completes well under 2 s."""
    async with faulty_suite(database_url, checkout_steps="warehouse,rewards+email") as (
        suite,
        faults,
    ):
        faults["rewards"].add("POST", CREDIT, "delay", delay=1.0)
        faults["email"].add("POST", "/emails", "delay", delay=1.0)
        started = time.monotonic()
        response = await suite.orchestrator.post("/checkouts", json=checkout_body())
        took = time.monotonic() - started

        assert response.status_code == 201, response.text
        checkout = response.json()
        assert checkout["status"] == "completed"
        assert took < 1.6, f"took {took:.2f} s: the two 1 s calls did not overlap"
        steps = by_name(checkout)
        assert [(s["name"], s["kind"], s["group"]) for s in checkout["steps"]] == [
            ("warehouse", "pivot", 0),
            ("rewards", "retriable", 1),
            ("email", "retriable", 1),
        ]
        assert overlap(steps["rewards"], steps["email"])
        # Each one after the reservation succeeded, each called once.
        for name in ("rewards", "email"):
            assert at(steps[name]["started_at"]) >= at(steps["warehouse"]["finished_at"])
            assert steps[name]["attempts"] == 1
        assert (await suite.inventory("SKU-001"))["reserved"] == 2
        assert await suite.balance("c-42") == 39
        assert [e["template"] for e in await suite.emails("ada@example.com")] == [
            "order_confirmation"
        ]
        assert (await suite.orchestrator.get(f"/checkouts/{checkout['id']}")).json() == checkout
        assert await violations(suite) == []


async def test_in_sequence_the_same_latencies_add_up(database_url: Callable[[str], str]) -> None:
    """The default plan, with the same 1 s in front of rewards and of email, takes over 2 s."""
    async with faulty_suite(database_url) as (suite, faults):
        faults["rewards"].add("POST", CREDIT, "delay", delay=1.0)
        faults["email"].add("POST", "/emails", "delay", delay=1.0)
        started = time.monotonic()
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()

        assert time.monotonic() - started >= 2.0
        assert checkout["status"] == "completed"
        steps = by_name(checkout)
        assert not overlap(steps["rewards"], steps["email"])
        assert [s["kind"] for s in checkout["steps"]] == ["compensatable", "compensatable", "pivot"]
        assert [s["group"] for s in checkout["steps"]] == [0, 1, 2]


async def test_a_refusal_in_a_group_compensates_the_other_once_it_settled(
    database_url: Callable[[str], str],
) -> None:
    """`rewards+warehouse,email` sold out: the credit, still in flight at the refusal, is reversed."""
    async with faulty_suite(
        database_url, stock={"SKU-SOLDOUT": 0}, checkout_steps="rewards+warehouse,email"
    ) as (suite, faults):
        faults["rewards"].add("POST", CREDIT, "delay", delay=0.5)
        response = await suite.orchestrator.post("/checkouts", json=checkout_body(items=SOLD_OUT))

        checkout = response.json()
        assert checkout["status"] == "failed"
        steps = by_name(checkout)
        assert {name: s["status"] for name, s in steps.items()} == {
            "rewards": "compensated",
            "warehouse": "failed",
            "email": "skipped",
        }
        assert [s["kind"] for s in checkout["steps"]] == ["compensatable", "compensatable", "pivot"]
        assert checkout["error"]["step"] == "warehouse"
        assert steps["warehouse"]["http_status"] == 409
        # The refusal came first; the credit landed later and was reversed only after that.
        assert at(steps["warehouse"]["finished_at"]) < at(steps["rewards"]["finished_at"])
        assert at(steps["rewards"]["finished_at"]) <= at(steps["rewards"]["compensated_at"])
        assert await suite.balance("c-42") == 0
        ledger = await suite.rewards.get("/transactions", params={"checkout_id": checkout["id"]})
        assert sorted(t["kind"] for t in ledger.json()["items"]) == ["credit", "reversal"]
        assert await suite.emails("ada@example.com") == []
        assert await violations(suite) == []


async def test_a_transient_failure_in_a_group_is_retried_on_that_step_alone(
    database_url: Callable[[str], str],
) -> None:
    """Email answering 503 twice is retried while rewards finishes; the checkout completes."""
    async with faulty_suite(database_url, checkout_steps="warehouse,rewards+email") as (
        suite,
        faults,
    ):
        faults["email"].add("POST", "/emails", "status", status=503, times=2)
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()

        assert checkout["status"] == "completed"
        steps = by_name(checkout)
        assert (steps["rewards"]["attempts"], steps["email"]["attempts"]) == (1, 3)
        assert await suite.balance("c-42") == 39
        assert len(await suite.emails("ada@example.com")) == 1
        assert await violations(suite) == []


async def test_a_refused_retriable_step_waits_and_nothing_is_undone(
    database_url: Callable[[str], str],
) -> None:
    """Past the pivot a refusal is kept for an operator, never compensated; /retry completes it."""
    async with faulty_suite(
        database_url, checkout_steps="warehouse,rewards+email", resume_delay_s=3600
    ) as (suite, faults):
        faults["rewards"].add("POST", CREDIT, "status", status=422)
        response = await suite.orchestrator.post(
            "/checkouts", json=checkout_body(), headers={"Prefer": "respond-async"}
        )
        checkout_id = response.json()["id"]
        with anyio.fail_after(10):
            while True:
                checkout = (await suite.orchestrator.get(f"/checkouts/{checkout_id}")).json()
                if checkout["waiting"] and checkout["waiting"]["next_attempt_at"]:
                    break
                await anyio.sleep(0.05)

        steps = by_name(checkout)
        assert checkout["status"] == "running"
        assert checkout["error"] is None
        assert steps["rewards"]["status"] == "running"
        assert steps["rewards"]["error"]["retryable"] is False
        assert steps["email"]["status"] == "succeeded"
        assert "rewards was refused" in checkout["waiting"]["reason"]
        assert checkout["waiting"]["cancellable"] is False
        # Nothing undone: the reservation and the confirmation stand.
        assert (await suite.inventory("SKU-001"))["reserved"] == 2
        assert len(await suite.emails("ada@example.com")) == 1
        cancel = await suite.orchestrator.post(f"/checkouts/{checkout_id}/cancel")
        assert cancel.status_code == 409

        assert (await suite.orchestrator.post(f"/checkouts/{checkout_id}/retry")).status_code == 202
        checkout = await wait_finished(suite.orchestrator, f"/checkouts/{checkout_id}")
        assert checkout["status"] == "completed"
        assert by_name(checkout)["rewards"]["attempts"] == 2
        assert await suite.balance("c-42") == 39
        assert len(await suite.emails("ada@example.com")) == 1
        assert await violations(suite) == []


async def test_cancel_during_a_compensatable_group_undoes_both(
    database_url: Callable[[str], str],
) -> None:
    """`warehouse+rewards,email` cancelled while both calls are in flight: both are undone."""
    async with faulty_suite(database_url, checkout_steps="warehouse+rewards,email") as (
        suite,
        faults,
    ):
        faults["warehouse"].add("POST", "/reservations", "delay", delay=0.5)
        faults["rewards"].add("POST", CREDIT, "delay", delay=0.5)
        response = await suite.orchestrator.post(
            "/checkouts", json=checkout_body(), headers={"Prefer": "respond-async"}
        )
        checkout_id = response.json()["id"]
        await anyio.sleep(0.2)
        cancel = await suite.orchestrator.post(f"/checkouts/{checkout_id}/cancel")
        assert cancel.status_code == 202, cancel.text

        checkout = await wait_finished(suite.orchestrator, f"/checkouts/{checkout_id}")
        assert checkout["status"] == "failed"
        assert checkout["error"]["kind"] == "cancelled"
        assert {s["name"]: s["status"] for s in checkout["steps"]} == {
            "warehouse": "compensated",
            "rewards": "compensated",
            "email": "skipped",
        }
        assert (await suite.inventory("SKU-001"))["reserved"] == 0
        assert await suite.balance("c-42") == 0
        assert await suite.emails("ada@example.com") == []
        assert await violations(suite) == []


async def test_many_concurrent_checkouts_keep_every_invariant(
    database_url: Callable[[str], str],
) -> None:
    """Forty checkouts at once on `warehouse,rewards+email`, with faults: each effect once."""
    async with faulty_suite(
        database_url,
        stock={"SKU-001": 100, "SKU-SOLDOUT": 0},
        checkout_steps="warehouse,rewards+email",
    ) as (suite, faults):
        faults["rewards"].add("POST", CREDIT, "lose_answer", times=5)
        faults["email"].add("POST", "/emails", "status", status=503, times=5)
        faults["warehouse"].add("POST", "/reservations", "lose_answer", times=3)
        bodies = [
            checkout_body(
                customer_id=f"m-{n}",
                email=f"m{n}@example.com",
                member=n % 3 != 0,
                items=SOLD_OUT if n % 7 == 0 else None,
            )
            for n in range(40)
        ]
        answers: list[dict[str, Any]] = []

        async def place(body: dict[str, Any]) -> None:
            answers.append((await suite.orchestrator.post("/checkouts", json=body)).json())

        async with anyio.create_task_group() as group:
            for body in bodies:
                group.start_soon(place, body)

        assert sorted(a["status"] for a in answers).count("failed") == 6
        assert all(a["status"] in ("completed", "failed") for a in answers)
        assert await violations(suite) == []
