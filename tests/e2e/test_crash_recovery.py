"""Crash recovery with real processes: the orchestrator dies by SIGKILL mid-saga and a restart on
the same database finishes every checkout, each effect applied exactly once.

``CRASH_POINTS`` makes the orchestrator kill itself at an exact place of the saga (before or after
a service call or a compensation), which no outside signal could time. Warehouse, rewards and email
run once per module and backend; each test has its own orchestrator database, skus and customers.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import _fresh_postgres_database
from tests.e2e.harness import SERVICES, TEST_BOUND_S, Harness, ServiceProcess
from tests.invariants import check_invariants, wait_until_terminal
from tests.suite import checkout_body

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

ASYNC = {"Prefer": "respond-async"}
# With respond-async the contract promises 202, but a saga that ends before the answer is written
# is answered 201 (orchestrator/api.py reads the checkout after starting it): both mean accepted.
ACCEPTED = (201, 202)
DEFAULT_ORDER = "warehouse,rewards,email"


@dataclass(frozen=True)
class Scenario:
    """Where the orchestrator dies, and the checkout that gets it there."""

    steps: str
    checkout: str  # "ok", "sold_out" (the warehouse refuses) or "rewards_refuses"
    status: str  # the checkout's final status


SCENARIOS = {
    "warehouse:before_call": Scenario(DEFAULT_ORDER, "ok", "completed"),
    "warehouse:after_call": Scenario(DEFAULT_ORDER, "ok", "completed"),
    "rewards:after_call": Scenario(DEFAULT_ORDER, "ok", "completed"),
    "email:before_call": Scenario(DEFAULT_ORDER, "ok", "completed"),
    "email:after_call": Scenario(DEFAULT_ORDER, "ok", "completed"),
    # The rewards step is refused (the first run's REWARDS_URL answers 404), so the reservation
    # made before it is released.
    "warehouse:before_compensate": Scenario(DEFAULT_ORDER, "rewards_refuses", "failed"),
    # Out of stock after the points were credited: the credit is reversed.
    "rewards:after_compensate": Scenario("rewards,warehouse,email", "sold_out", "failed"),
    # Out of stock after the confirmation was sent: an order_cancelled follows it.
    "email:before_compensate": Scenario("email,warehouse,rewards", "sold_out", "failed"),
    "email:after_compensate": Scenario("email,warehouse,rewards", "sold_out", "failed"),
    # Concurrent groups ("plan@point"): the crash kills the other step of the group mid-flight
    # too, and the restart resumes each unfinished step of the group.
    "warehouse,rewards+email@rewards:before_call": Scenario(
        "warehouse,rewards+email", "ok", "completed"
    ),
    "warehouse,rewards+email@rewards:after_call": Scenario(
        "warehouse,rewards+email", "ok", "completed"
    ),
    "warehouse,rewards+email@email:after_call": Scenario(
        "warehouse,rewards+email", "ok", "completed"
    ),
    # Out of stock while the credit of the same group lands: the credit is reversed.
    "rewards+warehouse,email@rewards:before_compensate": Scenario(
        "rewards+warehouse,email", "sold_out", "failed"
    ),
    "rewards+warehouse,email@rewards:after_compensate": Scenario(
        "rewards+warehouse,email", "sold_out", "failed"
    ),
    # The rewards step of the group is refused: the reservation beside it is released.
    "warehouse+rewards,email@warehouse:after_compensate": Scenario(
        "warehouse+rewards,email", "rewards_refuses", "failed"
    ),
}
ON_POSTGRES = (
    "warehouse:after_call",
    "rewards:after_compensate",
    "warehouse,rewards+email@rewards:after_call",
    "rewards+warehouse,email@rewards:after_compensate",
)


def _suffix() -> str:
    parts = [os.environ.get("TEST_DB_SUFFIX", ""), os.environ.get("PYTEST_XDIST_WORKER", "")]
    return "".join(f"_{part}" for part in parts if part)


class SharedServices:
    """Warehouse, rewards and email processes per backend, started on first use."""

    def __init__(self, workdir: Path) -> None:
        self.harness = Harness(workdir)
        self.started: dict[str, dict[str, ServiceProcess]] = {}

    async def get(self, backend: str) -> dict[str, ServiceProcess]:
        if backend not in self.started:
            if backend == "sqlite":
                urls = {s: f"sqlite:///{self.harness.workdir / s}.db" for s in SERVICES}
            else:
                urls = {
                    s: _fresh_postgres_database(f"checkout_test_crash_{s}{_suffix()}")
                    for s in SERVICES
                }
            processes = {
                s: self.harness.process(s, name=f"{backend}-{s}", DATABASE_URL=urls[s])
                for s in SERVICES
            }
            self.started[backend] = processes
            await self.harness.start_all(*processes.values())
        processes = self.started[backend]
        for process in processes.values():
            if not process.alive():
                await process.start()
        return processes


@pytest.fixture(scope="module")
def shared_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedServices]:
    """The services of this module's tests, killed when the module is done."""
    shared = SharedServices(tmp_path_factory.mktemp("crash-services"))
    try:
        yield shared
    finally:
        shared.harness.close()


@dataclass
class Rig:
    """One test's view: its orchestrator process and clients of every service."""

    orchestrator: ServiceProcess
    services: dict[str, ServiceProcess]
    api: httpx.AsyncClient
    warehouse: httpx.AsyncClient
    rewards: httpx.AsyncClient
    email: httpx.AsyncClient
    tag: str

    async def stock(self, sku: str, on_hand: int) -> None:
        response = await self.warehouse.put(f"/inventory/{sku}", json={"on_hand": on_hand})
        assert response.status_code in (200, 201), response.text

    async def violations(self, **options: Any) -> list[str]:
        return await check_invariants(self.api, self.warehouse, self.rewards, self.email, **options)


@pytest.fixture
async def rig_factory(
    harness: Harness,
    shared_services: SharedServices,
    database_url: Callable[[str], str],
    backend: str,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., Rig]]:
    """Builds a Rig: the shared services of the backend, plus a fresh orchestrator (not started)."""
    # The shared processes' logs join the report of a failing test, after the test's own.
    services = await shared_services.get(backend)
    harness.processes.extend(services.values())
    tag = uuid.uuid5(uuid.NAMESPACE_URL, request.node.nodeid).hex[:8]

    def make(**knobs: str) -> Rig:
        orchestrator = harness.orchestrator(database_url("orchestrator"), services, **knobs)
        clients = [harness.client(orchestrator)] + [harness.client(services[s]) for s in SERVICES]
        return Rig(orchestrator, services, *clients, tag=tag)

    yield make
    # Shared processes are the module's to stop, not this test's.
    for process in services.values():
        harness.processes.remove(process)


async def _post_expecting_death(
    api: httpx.AsyncClient, body: dict[str, Any], **headers: str
) -> str | None:
    """POST a checkout to an orchestrator about to die: its id if the 202 arrived first."""
    try:
        response = await api.post("/checkouts", json=body, headers=ASYNC | headers)
    except httpx.TransportError:
        return None
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _crash_params() -> list[Any]:
    params = [pytest.param("sqlite", point, id=f"sqlite-{point}") for point in SCENARIOS]
    params += [
        pytest.param("postgres", point, id=f"postgres-{point}", marks=pytest.mark.postgres)
        for point in ON_POSTGRES
    ]
    return params


@pytest.mark.parametrize(("backend", "point"), _crash_params(), indirect=["backend"])
async def test_a_crash_at_any_saga_point_is_recovered_exactly_once(
    rig_factory: Callable[..., Rig], point: str
) -> None:
    """Killed at a crash point, the orchestrator restarted on its database ends the checkout once."""
    scenario = SCENARIOS[point]
    point = point.split("@")[-1]
    with anyio.fail_after(TEST_BOUND_S):
        first_knobs = {"CRASH_POINTS": point, "CHECKOUT_STEPS": scenario.steps, "LEASE_TTL_S": "1"}
        rig = rig_factory(**first_knobs)
        env_after_crash = {k: v for k, v in rig.orchestrator.env.items() if k != "CRASH_POINTS"}
        if scenario.checkout == "rewards_refuses":
            # Any path under /accounts is a 404 at the warehouse: a refusal, not a transient fault.
            rig.orchestrator.env["REWARDS_URL"] = rig.services["warehouse"].url
        sku, customer = f"SKU-{rig.tag}", f"c-{rig.tag}"
        await rig.stock(sku, 0 if scenario.checkout == "sold_out" else 10)
        await rig.orchestrator.start()

        body = checkout_body(
            customer_id=customer,
            email=f"{customer}@example.com",
            items=[{"sku": sku, "quantity": 2, "unit_price": "19.99"}],
        )
        accepted = await _post_expecting_death(rig.api, body)
        assert await rig.orchestrator.wait_exit(20) == -signal.SIGKILL

        await rig.orchestrator.start(env_after_crash)
        views = await wait_until_terminal(rig.api, timeout_s=30)
        assert len(views) == 1, views
        [(checkout_id, checkout)] = views.items()
        assert accepted in (None, checkout_id)
        assert checkout is not None
        assert checkout["status"] == scenario.status, checkout
        assert await rig.violations() == []

        steps = {s["name"]: s for s in checkout["steps"]}
        step, phase = point.split(":")
        if phase.endswith("_call"):
            # The crashed attempt was journaled as started, so the retry is attempt 2.
            assert steps[step]["attempts"] == 2, checkout
            assert steps[step]["status"] == "succeeded"
        else:
            assert steps[step]["status"] == "compensated", checkout
            assert steps[step]["compensated_at"] is not None


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_keyed_request_whose_answer_died_with_the_process_is_answered_after_restart(
    rig_factory: Callable[..., Rig],
) -> None:
    """The same Idempotency-Key after a crash never starts a second checkout: 409 while young, then the journal's answer."""
    with anyio.fail_after(TEST_BOUND_S):
        rig = rig_factory(CRASH_POINTS="warehouse:before_call", CHECKOUT_SYNC_DEADLINE_S="0")
        env_after_crash = {k: v for k, v in rig.orchestrator.env.items() if k != "CRASH_POINTS"}
        sku, customer = f"SKU-{rig.tag}", f"c-{rig.tag}"
        await rig.stock(sku, 10)
        await rig.orchestrator.start()
        body = checkout_body(
            customer_id=customer,
            email=f"{customer}@example.com",
            items=[{"sku": sku, "quantity": 1, "unit_price": "3.50"}],
        )
        key = {"Idempotency-Key": f"order-{rig.tag}"}
        first = await _post_expecting_death(rig.api, body, **key)
        assert await rig.orchestrator.wait_exit(20) == -signal.SIGKILL
        await rig.orchestrator.start(env_after_crash)

        statuses = []
        while True:
            response = await rig.api.post("/checkouts", json=body, headers=key)
            statuses.append(response.status_code)
            if response.status_code != 409:
                break
            assert response.headers["Retry-After"] == "1"
            await anyio.sleep(0.5)

        replay = response.json()
        assert response.headers.get("Idempotent-Replayed") == "true"
        assert statuses[-1] in (201, 202)
        assert first in (None, replay["id"])
        views = await wait_until_terminal(rig.api, timeout_s=30)
        assert list(views) == [replay["id"]]
        assert await rig.violations() == []
        again = await rig.api.post("/checkouts", json=body, headers=key)
        assert (again.status_code, again.json()) == (response.status_code, replay)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_sigkill_with_thirty_checkouts_in_flight(
    rig_factory: Callable[..., Rig], harness: Harness
) -> None:
    """kill -9 with 30 checkouts mid-saga: after a restart all are terminal, every effect once."""
    with anyio.fail_after(TEST_BOUND_S):
        rig = rig_factory()
        # Every confirmation takes 5 s on the first run, so no checkout can end before the kill.
        proxy = harness.process(
            "proxy",
            PROXY_UPSTREAM=rig.services["email"].url,
            PROXY_DELAY_S="5",
            PROXY_DELAY="POST /emails",
        )
        await harness.start_all(proxy)
        env_after_crash = dict(rig.orchestrator.env)
        rig.orchestrator.env["EMAIL_URL"] = proxy.url
        await rig.orchestrator.start()
        plenty, scarce = f"SKU-{rig.tag}-A", f"SKU-{rig.tag}-B"
        await rig.stock(plenty, 1000)
        await rig.stock(scarce, 5)

        bodies = []
        for n in range(30):
            sku = scarce if n % 3 == 0 else plenty
            bodies.append(
                checkout_body(
                    customer_id=f"c-{rig.tag}-{n % 4}",
                    email=f"c{n % 4}-{rig.tag}@example.com",
                    member=n % 2 == 0,
                    items=[{"sku": sku, "quantity": 1 + n % 2, "unit_price": f"{n}.75"}],
                )
            )
        accepted: list[str] = []
        refused: list[str] = []
        first_accepted = anyio.Event()

        async def post(body: dict[str, Any]) -> None:
            try:
                response = await rig.api.post("/checkouts", json=body, headers=ASYNC)
            except httpx.TransportError as exc:
                refused.append(type(exc).__name__)
                return
            assert response.status_code in ACCEPTED, response.text
            accepted.append(response.json()["id"])
            first_accepted.set()

        async with anyio.create_task_group() as group:
            for body in bodies:
                group.start_soon(post, body)
            # The kill comes ~0.3 s into the burst (timed from the first answer, so a slow machine
            # still gets checkouts in flight): some posts get no answer, which is tolerated.
            with anyio.fail_after(20):
                await first_accepted.wait()
            await anyio.sleep(0.3)
            killed_at = datetime.now(UTC)
            assert await rig.orchestrator.kill() == -signal.SIGKILL

        assert len(accepted) + len(refused) == 30
        assert accepted, "no checkout was accepted before the kill"
        await rig.orchestrator.start(env_after_crash)
        views = await wait_until_terminal(rig.api, timeout_s=45)
        assert set(accepted) <= set(views)
        assert await rig.violations(wait_s=0) == []
        completed = [v for v in views.values() if v and v["status"] == "completed"]
        assert completed
        # No confirmation could be sent before the kill: every completed checkout was resumed.
        assert all(datetime.fromisoformat(v["updated_at"]) > killed_at for v in completed)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("victim", SERVICES)
async def test_a_service_killed_mid_saga_and_restarted(
    rig_factory: Callable[..., Rig], victim: str
) -> None:
    """kill -9 of a service with checkouts in flight: retried, parked and resumed, each effect once."""
    with anyio.fail_after(TEST_BOUND_S):
        rig = rig_factory(
            CHECKOUT_STEPS="email,warehouse,rewards" if victim == "email" else DEFAULT_ORDER
        )
        await rig.orchestrator.start()
        plenty, scarce = f"SKU-{rig.tag}-A", f"SKU-{rig.tag}-B"
        await rig.stock(plenty, 1000)
        await rig.stock(scarce, 4)
        accepted = []

        async def post(n: int) -> None:
            body = checkout_body(
                customer_id=f"c-{rig.tag}-{n % 3}",
                email=f"c{n % 3}-{rig.tag}@example.com",
                member=n % 2 == 0,
                items=[
                    {"sku": scarce if n % 4 == 0 else plenty, "quantity": 1, "unit_price": "9.99"}
                ],
            )
            response = await rig.api.post("/checkouts", json=body, headers=ASYNC)
            assert response.status_code in ACCEPTED, response.text
            accepted.append(response.json()["id"])

        async with anyio.create_task_group() as group:
            for n in range(20):
                group.start_soon(post, n)
            # Killed once the first checkouts are accepted, while the rest are still to call it: a
            # fixed delay (0.2 s) let every saga pass the victim first once the journal got fast.
            with anyio.fail_after(10):
                while len(accepted) < 3:
                    await anyio.sleep(0.005)
            assert await rig.services[victim].kill() == -signal.SIGKILL
        await anyio.sleep(1)
        await rig.services[victim].start()

        views = await wait_until_terminal(rig.api, accepted, timeout_s=60)
        assert await rig.violations(wait_s=0) == []
        statuses = {v["status"] for v in views.values() if v}
        assert "completed" in statuses
        attempts = [
            s["attempts"] for v in views.values() if v for s in v["steps"] if s["name"] == victim
        ]
        assert max(attempts) > 1, "the kill hit no call in flight"
