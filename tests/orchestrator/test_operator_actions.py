"""Parking after transient outages, and the operator's retry and cancel actions."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tests.faults import faulty_suite
from tests.orchestrator.test_faults import step
from tests.suite import Suite, checkout_body

pytestmark = pytest.mark.anyio

PARKING = {"step_max_attempts": 2, "resume_delay_s": 3600, "recovery_interval_s": 0.05}


async def wait_for(
    suite: Suite, location: str, status: str, timeout_s: float = 10
) -> dict[str, Any]:
    with anyio.fail_after(timeout_s):
        while True:
            checkout = (await suite.orchestrator.get(location)).json()
            if checkout["status"] == status:
                return checkout  # type: ignore[no-any-return]
            await anyio.sleep(0.02)


async def test_an_outage_parks_the_checkout_and_says_why(database_url: Any) -> None:
    """A step failing past its attempts parks the checkout (202), which explains what it waits for."""
    async with faulty_suite(database_url, **PARKING) as (suite, faults):
        faults["rewards"].add("POST", "/accounts/*/transactions", "refuse", times=2)
        response = await suite.orchestrator.post("/checkouts", json=checkout_body())

        assert response.status_code == 202
        checkout = response.json()
        assert checkout["status"] == "running"
        waiting = checkout["waiting"]
        assert waiting["step"] == "rewards"
        assert waiting["attempts"] == 2
        assert "parked" in waiting["reason"]
        assert waiting["next_attempt_at"] is not None
        assert waiting["last_error"]["kind"] == "StepTransientError"
        assert waiting["lease_owner"] is None
        assert waiting["cancellable"] is True
        assert step(checkout, "warehouse")["status"] == "succeeded"


async def test_a_parked_checkout_resumes_by_itself(database_url: Any) -> None:
    """After RESUME_DELAY_S the recovery loop resumes a parked checkout, which completes."""
    settings = PARKING | {"resume_delay_s": 0.2}
    async with faulty_suite(database_url, **settings) as (suite, faults):
        faults["rewards"].add("POST", "/accounts/*/transactions", "refuse", times=2)
        location = (await suite.orchestrator.post("/checkouts", json=checkout_body())).headers[
            "location"
        ]

        checkout = await wait_for(suite, location, "completed")
        assert step(checkout, "rewards")["attempts"] == 3
        assert checkout["waiting"] is None
        assert await suite.balance("c-42") == 39


async def test_retry_resumes_a_parked_checkout_now(database_url: Any) -> None:
    """POST /retry drives a parked checkout at once; repeating it is harmless."""
    async with faulty_suite(database_url, **PARKING) as (suite, faults):
        faults["rewards"].add("POST", "/accounts/*/transactions", "refuse", times=2)
        location = (await suite.orchestrator.post("/checkouts", json=checkout_body())).headers[
            "location"
        ]

        retried = await suite.orchestrator.post(f"{location}/retry")
        assert retried.status_code == 202
        checkout = await wait_for(suite, location, "completed")
        again = await suite.orchestrator.post(f"{location}/retry")

        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"
        assert checkout["steps"][1]["attempts"] == 3
        assert await suite.balance("c-42") == 39
        assert len(await suite.emails("ada@example.com")) == 1


async def test_cancel_before_the_pivot_compensates(database_url: Any) -> None:
    """Cancelling a parked checkout releases its reservation and fails it as cancelled, idempotently."""
    async with faulty_suite(database_url, **PARKING) as (suite, faults):
        faults["rewards"].add("POST", "/accounts/*/transactions", "refuse", times=2)
        location = (await suite.orchestrator.post("/checkouts", json=checkout_body())).headers[
            "location"
        ]

        cancelled = await suite.orchestrator.post(f"{location}/cancel")
        assert cancelled.status_code == 202
        checkout = await wait_for(suite, location, "failed")
        again = await suite.orchestrator.post(f"{location}/cancel")

        assert again.status_code == 200
        assert again.json()["id"] == checkout["id"]
        assert checkout["error"]["kind"] == "cancelled"
        assert step(checkout, "warehouse")["status"] == "compensated"
        assert step(checkout, "email")["status"] == "skipped"
        assert (await suite.inventory("SKU-001"))["reserved"] == 0
        assert await suite.balance("c-42") is None
        assert await suite.emails("ada@example.com") == []


async def test_cancel_past_the_pivot_is_409(database_url: Any) -> None:
    """Once the confirmation email step has started, cancel is refused and the checkout completes."""
    async with faulty_suite(database_url, retry_initial_delay_s=0.05, retry_max_delay_s=0.05) as (
        suite,
        faults,
    ):
        faults["email"].add("POST", "/emails", "status", status=503, times=10)
        location = (
            await suite.orchestrator.post(
                "/checkouts", json=checkout_body(), headers={"Prefer": "respond-async"}
            )
        ).headers["location"]
        with anyio.fail_after(5):
            while step((await suite.orchestrator.get(location)).json(), "email")["attempts"] == 0:
                await anyio.sleep(0.01)

        refused = await suite.orchestrator.post(f"{location}/cancel")

        assert refused.status_code == 409
        assert "pivot" in refused.json()["detail"]
        checkout = await wait_for(suite, location, "completed")
        assert checkout["waiting"] is None
        assert len(await suite.emails("ada@example.com")) == 1


async def test_operator_actions_on_unknown_or_finished_checkouts(suite: Suite) -> None:
    """Retry and cancel answer 404 for unknown ids and 409 for finished checkouts."""
    done = (await suite.orchestrator.post("/checkouts", json=checkout_body())).json()

    for action in ("retry", "cancel"):
        missing = await suite.orchestrator.post(f"/checkouts/not-a-uuid/{action}")
        finished = await suite.orchestrator.post(f"/checkouts/{done['id']}/{action}")
        assert missing.status_code == 404
        assert finished.status_code == 409
        assert finished.headers["content-type"] == "application/problem+json"
    assert (await suite.orchestrator.get(f"/checkouts/{done['id']}")).json()[
        "status"
    ] == "completed"
