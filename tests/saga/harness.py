"""Drive one checkout through ``SagaRunner`` over the fakes, surviving crashes, and check the saga.

A crash (``Crash`` raised by a fake or a crash point) ends that replica; another replica with its
own owner takes the checkout over once the lease expires (``Journal.claim``) and drives it again.
At each takeover the dead owner's late write must be refused (fencing).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.models import Checkout, OrchestratorTable, Step
from orchestrator.saga.crashpoints import CrashPoints
from orchestrator.saga.retry import RetryPolicy
from orchestrator.saga.runner import SagaRunner
from orchestrator.store import Journal, LeaseLostError
from servicekit.db import create_async_db_engine
from tests.saga.fakes import Crash, FakeServices, fake_steps

POLICY = RetryPolicy(max_attempts=3, deadline_s=None, initial_delay_s=0, max_delay_s=0, jitter_s=0)
# Short enough that a successor waits a few milliseconds for a dead replica's lease to lapse.
LEASE_TTL_S = 0.005
MAX_CRASHES = 100


@asynccontextmanager
async def journal_engine(path: Path) -> AsyncIterator[AsyncEngine]:
    """An async engine on a new SQLite file holding the orchestrator's tables."""
    engine = create_async_db_engine(f"sqlite:///{path}")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(OrchestratorTable.metadata.create_all)
        yield engine
    finally:
        await engine.dispose()


def new_checkout(*, member: bool, order: list[str]) -> Checkout:
    """A checkout row filled as ``orchestrator.api._new_checkout`` fills it: 2 x 19.99 USD."""
    customer: dict[str, Any] = {"id": "c-42", "email": "ada@example.com", "name": "Ada Lovelace"}
    customer["rewards_member"] = member
    items = [{"sku": "SKU-001", "quantity": 2, "unit_price": "19.99"}]
    return Checkout(
        customer_id="c-42",
        customer=json.dumps(customer),
        items=json.dumps(items),
        currency="USD",
        total_cents=3998,
        points=39 if member else 0,
        step_order=",".join(order),
    )


@dataclass
class Run:
    """One checkout's journey: its id, the replica driving it now, and how many died on the way."""

    engine: AsyncEngine
    services: FakeServices
    checkout_id: uuid.UUID
    journal: Journal
    token: int
    crash_points: CrashPoints
    crashes: list[str] = field(default_factory=list)

    def runner(self, journal: Journal | None = None) -> SagaRunner:
        return SagaRunner(
            journal or self.journal, fake_steps(self.services), POLICY, self.crash_points
        )

    async def load(self) -> tuple[Checkout, list[Step]]:
        loaded = await self.journal.load(self.checkout_id)
        assert loaded is not None
        return loaded

    async def snapshot(self) -> Any:
        """The checkout and step rows as plain data, for comparing before and after."""
        checkout, steps = await self.load()
        rows = sorted((s.model_dump() for s in steps), key=lambda s: s["position"])
        return checkout.model_dump(), rows

    async def drive_to_the_end(self) -> None:
        """Drive until the runner returns, handing the checkout to a new replica after each crash."""
        while True:
            try:
                await self.runner().drive(self.checkout_id, self.token)
                return
            except Crash as crash:
                self.crashes.append(str(crash))
                assert len(self.crashes) <= MAX_CRASHES, "the saga never ends"
                await self.take_over()

    async def take_over(self) -> None:
        """A new replica claims the checkout once the lease lapses; the dead owner is fenced out."""
        dead, dead_token = self.journal, self.token
        successor = Journal(
            self.engine, owner=f"replica-{len(self.crashes)}", lease_ttl_s=LEASE_TTL_S
        )
        with anyio.fail_after(5):
            while (token := await successor.claim(self.checkout_id)) is None:
                await anyio.sleep(LEASE_TTL_S)
        assert token == dead_token + 1
        self.journal, self.token = successor, token
        before = await self.snapshot()
        with pytest.raises(LeaseLostError):
            await dead.record(
                self.checkout_id,
                dead_token,
                checkout={"status": "failed", "error": None},
                step=(next(iter(before[1]))["name"], {"status": "pending"}),
            )
        assert await self.snapshot() == before

    async def replay(self) -> None:
        """Drive the terminal checkout again, as its last owner and as a new replica: no change."""
        before, services_before, calls = (
            await self.snapshot(),
            self.services.state(),
            self.services.calls,
        )
        await self.runner().drive(self.checkout_id, self.token)
        late = Journal(self.engine, owner="replica-late", lease_ttl_s=LEASE_TTL_S)
        await anyio.sleep(LEASE_TTL_S * 2)
        assert await late.claim(self.checkout_id) is None
        await self.runner(late).drive(self.checkout_id, self.token + 1)
        assert await self.snapshot() == before
        assert self.services.state() == services_before
        assert self.services.calls == calls


async def start(
    engine: AsyncEngine,
    services: FakeServices,
    *,
    member: bool,
    order: list[str],
    crash_points: CrashPoints | None = None,
) -> Run:
    """Record a new checkout, leased to replica-0 with token 1."""
    journal = Journal(engine, owner="replica-0", lease_ttl_s=LEASE_TTL_S)
    checkout = await journal.create(new_checkout(member=member, order=order), order)
    assert checkout.lease_token == 1
    return Run(engine, services, checkout.id, journal, 1, crash_points or CrashPoints())


async def assert_saga_invariants(run: Run, *, member: bool) -> None:
    """Everything a terminal checkout promises, in the journal and in the services."""
    checkout, steps = await run.load()
    services, cid = run.services, str(run.checkout_id)
    by_name = {s.name: s for s in steps}
    order = [s.name for s in sorted(steps, key=lambda s: s.position)]

    # Effects: once per natural key, each always asked for under one Idempotency-Key.
    assert [e for e, n in Counter(services.effects).items() if n > 1] == []
    assert {e: k for e, k in services.keys.items() if len(k) != 1} == {}
    reservations = services.reservations_of(cid)
    active = [r for r in reservations if r["status"] == "reserved"]
    credits = services.transactions_of(cid, "credit")
    reversals = services.transactions_of(cid, "reversal")
    confirmations = services.emails_of(cid, "order_confirmation")
    cancellations = services.emails_of(cid, "order_cancelled")

    # The journal: terminal, lease given up, no step left in flight.
    assert checkout.status in ("completed", "failed")
    assert (checkout.lease_owner, checkout.lease_expires_at) == (None, None)
    for s in steps:
        assert s.status not in ("pending", "running"), s
        assert (s.compensated_at is not None) == (s.status == "compensated"), s
        if s.status == "skipped":
            assert s.result is None, s
        else:
            assert s.attempts >= 1 and s.started_at is not None, s

    if checkout.status == "completed":
        assert checkout.error is None
        assert len(reservations) == len(active) == 1
        assert len(credits) == (1 if member else 0)
        assert reversals == []
        assert len(confirmations) == 1
        assert cancellations == []
        for s in steps:
            skipped = s.name == "rewards" and not member
            assert s.status == ("skipped" if skipped else "succeeded"), s
            assert s.finished_at is not None, s
        assert json.loads(by_name["warehouse"].result or "")["reservation_id"] == active[0]["id"]
        assert json.loads(by_name["email"].result or "")["email_id"] == confirmations[0]["id"]
        if member:
            assert json.loads(by_name["rewards"].result or "")["transaction_id"] == credits[0]["id"]
            assert credits[0]["points"] == checkout.points
        return

    failure = json.loads(checkout.error or "null")
    failed = failure["step"]
    assert failed in ("warehouse", "rewards"), "the email is retried until it is sent"
    position = order.index(failed)
    assert active == []
    assert sum(t["points"] for t in credits + reversals) == 0
    assert len(reversals) == len(credits)
    email_before = order.index("email") < position
    assert len(confirmations) == (1 if email_before else 0)
    assert len(cancellations) == len(confirmations)
    for name in order[:position]:
        skipped = name == "rewards" and not member
        assert by_name[name].status == ("skipped" if skipped else "compensated"), by_name[name]
    took_effect = bool(reservations if failed == "warehouse" else credits)
    assert by_name[failed].status == ("compensated" if took_effect else "failed"), by_name[failed]
    for name in order[position + 1 :]:
        assert by_name[name].status == "skipped", by_name[name]
        assert by_name[name].attempts == 0, by_name[name]
