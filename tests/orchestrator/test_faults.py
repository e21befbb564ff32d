"""Transient faults between the orchestrator and the services: retried, voided, never doubled."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tests.faults import faulty_suite
from tests.suite import checkout_body

pytestmark = pytest.mark.anyio


def step(checkout: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in checkout["steps"] if s["name"] == name)


@pytest.mark.parametrize("kind", ["refuse", "timeout", "lose_answer"])
async def test_transient_failures_are_retried_with_the_same_key(
    database_url: Any, kind: str
) -> None:
    """Refused connections, timeouts and lost answers are retried; every effect happens once."""
    async with faulty_suite(database_url) as (suite, faults):
        faults["warehouse"].add("POST", "/reservations", kind, times=2)
        faults["rewards"].add("POST", "/accounts/*/transactions", kind, times=2)
        faults["email"].add("POST", "/emails", kind, times=2)
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()

        assert checkout["status"] == "completed"
        for name in ("warehouse", "rewards", "email"):
            assert step(checkout, name)["attempts"] == 3
            assert step(checkout, name)["status"] == "succeeded"
        assert (await suite.inventory("SKU-001"))["reserved"] == 2
        assert await suite.balance("c-42") == 39
        assert len(await suite.emails("ada@example.com")) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 408])
async def test_server_errors_are_retried(database_url: Any, status: int) -> None:
    """5xx and 408 answers are transient: the step succeeds on a later attempt."""
    async with faulty_suite(database_url) as (suite, faults):
        faults["warehouse"].add("POST", "/reservations", "status", status=status, times=3)
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()

        assert checkout["status"] == "completed"
        assert step(checkout, "warehouse")["attempts"] == 4
        assert (await suite.inventory("SKU-001"))["reserved"] == 2


async def test_429_waits_as_long_as_retry_after_says(database_url: Any) -> None:
    """A 429 with Retry-After: 1 delays the next attempt by about a second."""
    async with faulty_suite(database_url) as (suite, faults):
        faults["rewards"].add(
            "POST", "/accounts/*/transactions", "status", status=429, retry_after="1"
        )
        started = anyio.current_time()
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()

        assert anyio.current_time() - started >= 0.9
        assert checkout["status"] == "completed"
        assert step(checkout, "rewards")["attempts"] == 2


async def test_a_service_down_past_the_deadline_fails_the_checkout_and_voids_it(
    database_url: Any,
) -> None:
    """Rewards down past the checkout's deadline: it fails, the lost credit is found and reversed."""
    async with faulty_suite(database_url, step_max_attempts=3, checkout_deadline_s=0.001) as (
        suite,
        faults,
    ):
        faults["rewards"].add("POST", "/accounts/*/transactions", "lose_answer", times=3)
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()

        assert checkout["status"] == "failed"
        rewards = step(checkout, "rewards")
        assert rewards["attempts"] == 3
        assert rewards["error"]["retryable"] is True
        assert checkout["error"]["deadline_passed"] is True
        # The lost answers were applied once (same key): voiding the checkout reverses the credit.
        assert rewards["status"] == "compensated"
        assert await suite.balance("c-42") == 0
        assert step(checkout, "warehouse")["status"] == "compensated"
        assert (await suite.inventory("SKU-001"))["reserved"] == 0
        assert await suite.emails("ada@example.com") == []


async def test_unreachable_step_with_nothing_applied_is_just_failed(database_url: Any) -> None:
    """A step that never reached its service is voided (nothing to undo) and stays failed."""
    async with faulty_suite(database_url, step_max_attempts=2, checkout_deadline_s=0.001) as (
        suite,
        faults,
    ):
        faults["warehouse"].add("POST", "/reservations", "refuse", times=2)
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()

        assert checkout["status"] == "failed"
        assert step(checkout, "warehouse")["status"] == "failed"
        assert step(checkout, "warehouse")["error"]["kind"] == "StepTransientError"
        assert step(checkout, "warehouse")["result"]["status"] == "voided"
        assert (await suite.inventory("SKU-001"))["reserved"] == 0


async def test_the_email_is_retried_until_it_is_sent(database_url: Any) -> None:
    """Email past the usual attempt limit keeps the checkout running, then completes it."""
    async with faulty_suite(database_url, step_max_attempts=2) as (suite, faults):
        faults["email"].add("POST", "/emails", "status", status=503, times=12)
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()

        assert checkout["status"] == "completed"
        assert step(checkout, "email")["attempts"] == 13
        assert len(await suite.emails("ada@example.com")) == 1


async def test_compensation_is_retried_until_it_succeeds(database_url: Any) -> None:
    """A void that fails transiently is retried; the stock comes back exactly once."""
    async with faulty_suite(database_url, checkout_steps="warehouse,rewards,email") as (
        suite,
        faults,
    ):
        faults["rewards"].add("POST", "/accounts/*/transactions", "status", status=400)
        faults["warehouse"].add("POST", "/checkouts/*/void", "lose_answer", times=1)
        faults["warehouse"].add("POST", "/checkouts/*/void", "status", status=503, times=2)
        checkout = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()

        assert checkout["status"] == "failed"
        warehouse = step(checkout, "warehouse")
        assert warehouse["status"] == "compensated"
        assert warehouse["result"]["status"] == "released"
        assert (await suite.inventory("SKU-001")) == {
            "sku": "SKU-001",
            "on_hand": 10,
            "reserved": 0,
            "available": 10,
        }
        voids = [c for c in faults["warehouse"].calls if c[1].endswith("/void")]
        assert len(voids) == 4
