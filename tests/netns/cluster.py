"""The suite spread over hosts of a ``TestNetwork``: PostgreSQL, three services, two replicas.

Every process runs in its own namespace and listens on its host's address only; the orchestrator
replicas share one journal database on the network's own PostgreSQL, and each service has its
own database there. ``Load`` places checkouts through the replicas as a shop front end would
(asynchronously, tolerating a replica that stops answering), and ``verify`` checks, through the
public APIs only, that every accepted checkout is terminal and every effect happened once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from checkout_suite.services import SERVICES as PORTS
from tests.e2e.harness import SERVICES, Harness, ServiceProcess
from tests.invariants import check_invariants, describe, list_checkouts, wait_until_terminal
from tests.netns.network import TestNetwork
from tests.netns.postgres import TestPostgres
from tests.suite import checkout_body

REPLICAS = ("a", "b")
HOSTS = ["db", *SERVICES, *(f"orchestrator-{r}" for r in REPLICAS)]
BIG, SMALL = "SKU-BIG", "SKU-SMALL"
SMALL_STOCK = 10


@dataclass
class Cluster:
    network: TestNetwork
    postgres: TestPostgres
    harness: Harness
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    replicas: dict[str, ServiceProcess] = field(default_factory=dict)

    def placed(self, host: str, service: str) -> tuple[str, int, tuple[str, ...]]:
        return self.network.addresses[host], PORTS[service].port, self.network.launcher(host)

    async def start(self, *, journal_url_options: str = "", **knobs: str) -> None:
        """Start the services and both replicas (``knobs``: orchestrator settings;
        ``journal_url_options``: a query string for the replicas' DATABASE_URL) and stock."""
        for service in SERVICES:
            self.services[service] = self.harness.process(
                service,
                placed=self.placed(service, service),
                DATABASE_URL=self.postgres.url(service),
            )
        for replica in REPLICAS:
            self.replicas[replica] = self.harness.orchestrator(
                self.postgres.url("orchestrator") + journal_url_options,
                self.services,
                name=f"orchestrator-{replica}",
                placed=self.placed(f"orchestrator-{replica}", "orchestrator"),
                **knobs,
            )
        # The first replica creates the journal's tables alone; then the rest start together.
        await self.harness.start_all(self.replicas["a"], *self.services.values())
        await self.harness.start_all(self.replicas["b"])
        warehouse = self.client("warehouse")
        for sku, units in ((BIG, 100_000), (SMALL, SMALL_STOCK)):
            response = await warehouse.put(f"/inventory/{sku}", json={"on_hand": units})
            assert response.status_code == 201, response.text

    def client(self, name: str, *, timeout_s: float = 30.0) -> httpx.AsyncClient:
        """A client of a service or of a replica ("a", "b")."""
        process = self.replicas.get(name) or self.services[name]
        return self.harness.client(process, timeout_s=timeout_s)


def body(n: int) -> dict[str, Any]:
    """The nth checkout: members and not, and every tenth one for the scarce sku (some fail)."""
    return checkout_body(
        customer_id=f"c-{n % 20}",
        email=f"c{n % 20}@example.com",
        member=n % 20 < 14,
        items=[{"sku": SMALL if n % 10 == 0 else BIG, "quantity": 1, "unit_price": f"{n % 50}.25"}],
    )


@dataclass
class Load:
    """``total`` checkouts at ``concurrency``, each to the replica ``route(n)`` names.

    ``wait``: each request waits for its checkout to finish (at most ``concurrency`` sagas run
    at once, and ``latencies_s`` is what a shopper waits); otherwise ``Prefer: respond-async``
    (answered once the checkout is recorded, so the sagas pile up on the replicas).
    """

    cluster: Cluster
    total: int
    concurrency: int = 16
    wait: bool = False
    timeout_s: float = 30.0
    route: Callable[[int], str] = lambda n: REPLICAS[n % 2]
    # Called (in the background) just before the nth checkout is placed.
    at: dict[int, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    accepted: dict[str, str] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    # How long each refused request took to be answered (a refusal at once, or after a wait).
    refusal_latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    async def run(self, bound_s: float) -> None:
        clients = {r: self.cluster.client(r, timeout_s=self.timeout_s) for r in REPLICAS}
        headers = {} if self.wait else {"Prefer": "respond-async"}
        todo = iter(range(self.total))
        started = time.monotonic()

        async def place(group: anyio.abc.TaskGroup) -> None:
            for n in todo:
                if n in self.at:
                    group.start_soon(self.at[n])
                replica = self.route(n)
                sent = time.monotonic()
                try:
                    response = await clients[replica].post(
                        "/checkouts", json=body(n), headers=headers
                    )
                except httpx.TransportError as exc:
                    self.refused[f"{replica}:{type(exc).__name__}"] += 1
                    continue
                # 201 when the saga ended before the answer was written.
                if response.status_code in (201, 202):
                    self.accepted[response.json()["id"]] = replica
                    self.latencies_s.append(time.monotonic() - sent)
                else:
                    self.refused[f"{replica}:{response.status_code}"] += 1
                    self.refusal_latencies_s.append(time.monotonic() - sent)

        with anyio.fail_after(bound_s):
            async with anyio.create_task_group() as group:
                for _ in range(self.concurrency):
                    group.start_soon(place, group)
        self.elapsed_s = time.monotonic() - started

    def by(self, replica: str) -> list[str]:
        return [i for i, r in self.accepted.items() if r == replica]


async def until_no_new_checkouts(
    orchestrator: httpx.AsyncClient, *, quiet_s: float, timeout_s: float
) -> None:
    """Wait until no checkout has been created for ``quiet_s``. A request whose client gave up
    (its answer lost in a partition) may still reach its replica once the network heals and
    create a checkout then; the stock and balances are checked once every such one is in."""
    seen, since = -1, time.monotonic()
    with anyio.fail_after(timeout_s):
        while time.monotonic() - since < quiet_s:
            count = len(await list_checkouts(orchestrator))
            if count != seen:
                seen, since = count, time.monotonic()
            await anyio.sleep(0.5)


async def verify(
    cluster: Cluster, ids: list[str], *, reader: str = "b", timeout_s: float = 90.0
) -> dict[str, dict[str, Any]]:
    """Every checkout in ``ids`` terminal, and every checkout the journal holds (including any
    whose answer was lost on the way) terminal with each effect once; the views of ``ids``."""
    orchestrator = cluster.client(reader)
    views = await wait_until_terminal(orchestrator, ids, timeout_s=timeout_s)
    unfinished = [v for v in views.values() if not v or v["status"] not in ("completed", "failed")]
    assert not unfinished, f"{len(unfinished)} checkouts not terminal: {describe(unfinished)}"
    await until_no_new_checkouts(orchestrator, quiet_s=3.0, timeout_s=timeout_s)
    services = [cluster.client(s) for s in SERVICES]
    violations = await check_invariants(orchestrator, *services, wait_s=timeout_s)
    assert violations == [], "\n".join(violations[:20])
    statuses = Counter(v["status"] for v in views.values() if v)
    assert statuses["completed"] > 0, statuses
    assert statuses["failed"] > 0, statuses
    return {i: v for i, v in views.items() if v}


def percentile_ms(values_s: list[float], q: float) -> float:
    ordered = sorted(values_s)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


# Every scenario's line of figures, for the run's terminal summary (see conftest.py).
FIGURES: list[str] = []


def report(workdir: Path, name: str, **figures: object) -> str:
    """One line of a scenario's figures, kept beside the test's logs and in the run's summary."""
    line = f"{name}: " + ", ".join(f"{k}={v}" for k, v in figures.items())
    with (workdir / "figures.txt").open("a") as figures_file:
        figures_file.write(line + "\n")
    FIGURES.append(line)
    return line
