"""Choreography with real processes and a real RabbitMQ: ``kill -9`` of any one of the four with
20 checkouts in flight, then a restart, ends with every checkout terminal and every effect
applied exactly once (the outbox publishes what was committed, the inbox skips redeliveries).

The order is rewards,warehouse,email with stock for 14 of the 20: the six sold-out checkouts
travel back to the rewards service, which reverses their points, so compensation is in flight
too when the process dies.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import BrokerUnderTest
from tests.e2e.harness import SERVICES, TEST_BOUND_S, Harness
from tests.invariants import check_invariants, describe
from tests.suite import checkout_body

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

CHECKOUTS = 20
IN_STOCK = 14


@pytest.mark.parametrize("victim", ["warehouse", "rewards", "email", "orchestrator"])
async def test_kill_9_with_checkouts_in_flight_then_restart_applies_every_effect_once(
    harness: Harness, tmp_path: Path, broker: BrokerUnderTest, victim: str
) -> None:
    choreography = {
        "COORDINATION": "choreography",
        "BROKER_URL": broker.url,
        "EVENTS_PREFIX": broker.prefix,
    }
    urls = {name: f"sqlite:///{tmp_path / name}.db" for name in (*SERVICES, "orchestrator")}
    services = harness.services(urls, **choreography)
    orchestrator = harness.orchestrator(
        urls["orchestrator"], services, CHECKOUT_STEPS="rewards,warehouse,email", **choreography
    )
    processes = {**services, "orchestrator": orchestrator}
    with anyio.fail_after(TEST_BOUND_S):
        await harness.start_all(*processes.values())
        clients = {name: harness.client(process) for name, process in processes.items()}
        sku = f"SKU-{uuid.uuid4().hex[:8].upper()}"
        stocked = await clients["warehouse"].put(f"/inventory/{sku}", json={"on_hand": IN_STOCK})
        assert stocked.status_code in (200, 201), stocked.text

        async def place(index: int) -> None:
            body = checkout_body(
                customer_id=f"c-{victim}-{index}",
                email=f"buyer{index}@example.com",
                items=[{"sku": sku, "quantity": 1, "unit_price": "10.00"}],
            )
            response = await clients["orchestrator"].post(
                "/checkouts", json=body, headers={"Prefer": "respond-async"}
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])

        ids: list[str] = []
        async with anyio.create_task_group() as group:
            for index in range(CHECKOUTS):
                group.start_soon(place, index)
        # Kill once the victim has work in hand: a checkout at its step, or (for the
        # orchestrator, whose feed writes every step) at any step past the first.
        await _until_one_is_at(clients["orchestrator"], ids, victim)
        assert await processes[victim].kill() == -9
        if victim != "orchestrator":
            # Killed mid-flight: some checkouts wait for the dead service's events.
            page = await clients["orchestrator"].get("/checkouts", params={"limit": CHECKOUTS})
            unfinished = [
                view
                for view in page.json()["items"]
                if view["status"] not in ("completed", "failed")
            ]
            assert unfinished, "every checkout ended before the kill: nothing was in flight"
        await anyio.sleep(0.5)
        await processes[victim].start()

        problems = await check_invariants(
            clients["orchestrator"],
            clients["warehouse"],
            clients["rewards"],
            clients["email"],
            checkout_ids=ids,
            wait_s=60,
        )
        views = {c["id"]: c for c in await _read(clients["orchestrator"], ids)}
        assert problems == [], describe(views.values())
        statuses = sorted(view["status"] for view in views.values())
        assert statuses == ["completed"] * IN_STOCK + ["failed"] * (CHECKOUTS - IN_STOCK)
        inventory = (await clients["warehouse"].get(f"/inventory/{sku}")).json()
        assert inventory["reserved"] == IN_STOCK


async def _read(client: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]]:
    return [(await client.get(f"/checkouts/{checkout_id}")).json() for checkout_id in ids]


async def _until_one_is_at(client: httpx.AsyncClient, ids: list[str], victim: str) -> None:
    wanted = "warehouse" if victim == "orchestrator" else victim
    while True:
        page = (await client.get("/checkouts", params={"limit": len(ids)})).json()["items"]
        for view in page:
            if any(s["name"] == wanted and s["status"] == "running" for s in view["steps"]):
                return
        await anyio.sleep(0.005)


@pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_replicas_of_every_service_on_postgresql_share_the_work_and_survive_a_kill(
    harness: Harness, database_url: Any, broker: BrokerUnderTest
) -> None:
    """Two replicas of each service on one PostgreSQL database per service: their relays claim
    the outbox with SKIP LOCKED, their consumers compete for the queue, one journal feed is
    active. One warehouse replica dies by SIGKILL mid-flight; every checkout still ends once."""
    choreography = {
        "COORDINATION": "choreography",
        "BROKER_URL": broker.url,
        "EVENTS_PREFIX": broker.prefix,
    }
    urls = {name: database_url(name) for name in (*SERVICES, "orchestrator")}
    first = harness.services(urls, **choreography)
    second = {
        name: harness.process(name, name=f"{name}-2", DATABASE_URL=urls[name], **choreography)
        for name in SERVICES
    }
    orchestrators = [
        harness.orchestrator(urls["orchestrator"], first, name=f"orchestrator-{n}", **choreography)
        for n in (1, 2)
    ]
    with anyio.fail_after(TEST_BOUND_S):
        # The first of each creates the tables alone; then the rest start together.
        await harness.start_all(*first.values(), orchestrators[0])
        await harness.start_all(*second.values(), orchestrators[1])
        apis = [harness.client(process) for process in orchestrators]
        warehouse = harness.client(first["warehouse"])
        rewards, email = harness.client(first["rewards"]), harness.client(first["email"])
        sku = f"SKU-{uuid.uuid4().hex[:8].upper()}"
        stocked = await warehouse.put(f"/inventory/{sku}", json={"on_hand": 30})
        assert stocked.status_code in (200, 201), stocked.text
        ids: list[str] = []

        async def place(index: int) -> None:
            body = checkout_body(
                customer_id=f"c-replica-{index}",
                email=f"replica{index}@example.com",
                items=[{"sku": sku, "quantity": 1, "unit_price": "10.00"}],
            )
            response = await apis[index % 2].post(
                "/checkouts", json=body, headers={"Prefer": "respond-async"}
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])

        async with anyio.create_task_group() as group:
            for index in range(40):
                group.start_soon(place, index)
                if index == 20:
                    group.start_soon(second["warehouse"].kill)
        problems = await check_invariants(
            apis[0], warehouse, rewards, email, checkout_ids=ids, wait_s=60
        )
        assert problems == []
        views = await _read(apis[1], ids)
        assert sorted(v["status"] for v in views) == ["completed"] * 30 + ["failed"] * 10
        # Both replicas of the rewards service did some of the work.
        credits = [
            await _consumed_applied(harness.client(process))
            for process in (first["rewards"], second["rewards"])
        ]
        assert all(count > 0 for count in credits), credits


async def _consumed_applied(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("checkout_events_consumed_total{") and 'outcome="applied"' in line
    )
