"""A service slower than STEP_TIMEOUT_S, over real HTTP: the call times out in the orchestrator
but still lands at the service later. Only real sockets have timeouts, so only e2e tests see this.

A delaying reverse proxy in front of the warehouse holds the first ``POST /reservations`` for 3 s,
while the orchestrator gives up after 2 s (the smallest STEP_TIMEOUT_S), then forwards it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.e2e.harness import SERVICES, TEST_BOUND_S, Harness
from tests.invariants import check_invariants
from tests.suite import checkout_body

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

PROXY_DELAY_S = 3.0


async def slow_warehouse_suite(
    harness: Harness, tmp_path: Path, *, delay_s: float = PROXY_DELAY_S, **knobs: str
) -> tuple[httpx.AsyncClient, ...]:
    services = harness.services({s: f"sqlite:///{tmp_path / s}.db" for s in SERVICES})
    proxy = harness.process(
        "proxy",
        PROXY_UPSTREAM=services["warehouse"].url,
        PROXY_DELAY_S=str(delay_s),
        PROXY_DELAY="POST /reservations",
        PROXY_DELAY_TIMES="1",
    )
    orchestrator = harness.orchestrator(
        f"sqlite:///{tmp_path / 'orchestrator'}.db",
        services | {"warehouse": proxy.url},
        STEP_TIMEOUT_S="2",
        STEP_MAX_ATTEMPTS="1",
        **knobs,
    )
    await harness.start_all(orchestrator, proxy, *services.values())
    clients = tuple(harness.client(p) for p in (orchestrator, *services.values()))
    response = await clients[1].put("/inventory/SKU-001", json={"on_hand": 10})
    assert response.status_code == 201, response.text
    return clients


def step(checkout: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in checkout["steps"] if s["name"] == name)


async def test_a_timed_out_reservation_is_found_again_when_the_parked_checkout_resumes(
    harness: Harness, tmp_path: Path
) -> None:
    """The reservation whose answer timed out is replayed by the resumed attempt: completed, held once."""
    with anyio.fail_after(TEST_BOUND_S):
        api, warehouse, rewards, email = await slow_warehouse_suite(
            harness, tmp_path, RESUME_DELAY_S="2"
        )
        response = await api.post("/checkouts", json=checkout_body())
        assert response.status_code in (201, 202), response.text
        checkout_id = response.json()["id"]

        assert await check_invariants(api, warehouse, rewards, email, wait_s=30) == []
        checkout = (await api.get(f"/checkouts/{checkout_id}")).json()
        assert checkout["status"] == "completed"
        assert step(checkout, "warehouse")["attempts"] >= 2
        assert (await warehouse.get("/inventory/SKU-001")).json()["reserved"] == 2


async def test_a_reservation_landing_after_the_checkout_failed_is_not_left_behind(
    harness: Harness, tmp_path: Path
) -> None:
    """Past its deadline, a checkout whose reservation is still in flight fails without holding stock."""
    with anyio.fail_after(TEST_BOUND_S):
        # Held 6 s: the settling read (at ~2 s) surely comes first, however loaded the machine.
        api, warehouse, rewards, email = await slow_warehouse_suite(
            harness, tmp_path, delay_s=6, CHECKOUT_DEADLINE_S="1"
        )
        response = await api.post("/checkouts", json=checkout_body())
        assert response.status_code == 201, response.text
        checkout = response.json()
        # The one attempt timed out after the deadline: the checkout fails and voids itself at
        # the warehouse, which held nothing yet, so the step stays "failed".
        assert checkout["status"] == "failed"
        assert step(checkout, "warehouse")["status"] == "failed"
        assert step(checkout, "warehouse")["error"]["kind"] == "StepTransientError"
        assert step(checkout, "warehouse")["result"]["status"] == "voided"

        await anyio.sleep(6)  # the held request reaches the warehouse meanwhile: refused
        assert await check_invariants(api, warehouse, rewards, email, wait_s=5) == []
        listed = await warehouse.get("/reservations", params={"checkout_id": checkout["id"]})
        assert [r["status"] for r in listed.json()["items"]] == ["voided"]
        assert (await warehouse.get("/inventory/SKU-001")).json()["reserved"] == 0


async def test_with_1_s_in_front_of_rewards_and_email_a_concurrent_plan_takes_one_second(
    harness: Harness, tmp_path: Path
) -> None:
    """Real processes, `warehouse,rewards+email`, proxies adding 1 s to rewards and to email: a
    member's checkout completes well under 2 s, the two steps overlapping."""
    with anyio.fail_after(TEST_BOUND_S):
        services = harness.services({s: f"sqlite:///{tmp_path / s}.db" for s in SERVICES})
        proxies = {
            name: harness.process(
                "proxy",
                name=f"proxy-{name}",
                PROXY_UPSTREAM=services[name].url,
                PROXY_DELAY_S="1",
                PROXY_DELAY=rule,
            )
            for name, rule in (
                ("rewards", "POST /accounts/*/transactions"),
                ("email", "POST /emails"),
            )
        }
        orchestrator = harness.orchestrator(
            f"sqlite:///{tmp_path / 'orchestrator'}.db",
            services | {name: proxy.url for name, proxy in proxies.items()},
            CHECKOUT_STEPS="warehouse,rewards+email",
        )
        await harness.start_all(orchestrator, *proxies.values(), *services.values())
        api, warehouse, rewards, email = (
            harness.client(p) for p in (orchestrator, *services.values())
        )
        assert (await warehouse.put("/inventory/SKU-001", json={"on_hand": 10})).status_code == 201

        started = anyio.current_time()
        response = await api.post("/checkouts", json=checkout_body())
        took = anyio.current_time() - started

        assert response.status_code == 201, response.text
        checkout = response.json()
        assert checkout["status"] == "completed"
        assert 1.0 <= took < 1.7, took
        credit, confirmation = step(checkout, "rewards"), step(checkout, "email")
        at = datetime.fromisoformat
        assert max(at(credit["started_at"]), at(confirmation["started_at"])) < min(
            at(credit["finished_at"]), at(confirmation["finished_at"])
        )
        assert await check_invariants(api, warehouse, rewards, email) == []
        assert (await rewards.get("/accounts/c-42")).json()["balance"] == 39
