"""Drive one checkout through ``SagaRunner`` over the fakes, surviving crashes, and check the saga.

A crash (``Crash`` raised by a fake or a crash point) ends that replica; another replica with its
own owner takes the checkout over once the lease expires (``Journal.claim``) and drives it again.
A parked checkout (a step kept failing transiently) is claimed again at once (the runner resumes
parked checkouts after ``resume_delay_s=0``). At each takeover the previous owner's late write
must be refused (fencing). Between drives, the clock may pass the checkout's deadline and an
operator may ask to cancel it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.journal import records
from orchestrator.journal.journal import Journal, LeaseLostError
from orchestrator.journal.records import CheckoutRecord, Loaded, Transition
from orchestrator.models import OrchestratorTable
from orchestrator.saga.crashpoints import CrashPoints
from orchestrator.saga.plan import StepKind, parse_plan
from orchestrator.saga.retry import RetryPolicy
from orchestrator.saga.runner import SagaRunner
from servicekit.db.database import Database
from servicekit.db.engines import create_sync_engine
from servicekit.db.statements import SQL
from tests.saga.fake_steps import fake_steps
from tests.saga.fakes import Crash, FakeServices

POLICY = RetryPolicy(max_attempts=3, deadline_s=None, initial_delay_s=0, max_delay_s=0, jitter_s=0)
# Short enough that a successor waits a few milliseconds for a dead replica's lease to lapse.
LEASE_TTL_S = 0.002
MAX_INTERRUPTIONS = 200


@asynccontextmanager
async def journal_database(path: Path) -> AsyncIterator[Database]:
    """The journal's database on a new SQLite file holding the orchestrator's tables."""
    url = f"sqlite:///{path}"
    engine = create_sync_engine(url)
    OrchestratorTable.metadata.create_all(engine)
    engine.dispose()
    database = Database.open(url)
    try:
        yield database
    finally:
        await database.close()


def new_checkout(*, member: bool, plan: str, deadline_at: float | None) -> CheckoutRecord:
    """A checkout row filled as ``orchestrator.api._new_checkout`` fills it: 2 x 19.99 USD."""
    customer: dict[str, Any] = {"id": "c-42", "email": "ada@example.com", "name": "Ada Lovelace"}
    customer["rewards_member"] = member
    items = [{"sku": "SKU-001", "quantity": 2, "unit_price": "19.99"}]
    return records.new_checkout(
        customer_id="c-42",
        customer=json.dumps(customer),
        items=json.dumps(items),
        currency="USD",
        total_cents=3998,
        points=39 if member else 0,
        step_order=plan,
        deadline_at=deadline_at,
    )


@dataclass
class Run:
    """One checkout's journey: the replica driving it now and what happened on the way."""

    database: Database
    services: FakeServices
    checkout_id: uuid.UUID
    journal: Journal
    token: int
    crash_points: CrashPoints
    member: bool
    deadline_after_parks: int | None = None  # the clock passes the deadline after that many parks
    cancel_at: int | None = None  # an operator cancels after that many interruptions
    crashes: list[str] = field(default_factory=list)
    parks: int = 0
    cancels: list[bool] = field(default_factory=list)  # whether each cancel request was accepted
    deadline_passed: bool = False
    # As placed (``Supervisor.place``): recorded with its first steps started, for the first drive.
    placed: Loaded | None = None

    def runner(self, journal: Journal | None = None) -> SagaRunner:
        steps = fake_steps(self.services)
        return SagaRunner(
            journal or self.journal, steps, POLICY, self.crash_points, resume_delay_s=0
        )

    async def load(self) -> Loaded:
        loaded = await self.journal.load(self.checkout_id)
        assert loaded is not None
        return loaded

    async def snapshot(self) -> Any:
        """The checkout and step rows as plain data, for comparing before and after."""
        checkout, steps = await self.load()
        rows = sorted((asdict(s) for s in steps), key=lambda s: s["position"])
        return asdict(checkout), rows

    async def request_cancel(self) -> bool:
        """An operator asks to cancel (accepted only before the pivot)."""
        accepted = await self.journal.request_cancel(self.checkout_id)
        self.cancels.append(accepted)
        return accepted

    async def pass_deadline(self) -> None:
        """The clock passes the checkout's deadline."""
        await self.database.execute(
            SQL("UPDATE checkout SET deadline_at = :at WHERE id = :id"),
            {"at": time.time() - 1, "id": self.checkout_id},
        )
        self.deadline_passed = True

    async def between_drives(self) -> None:
        interruptions = len(self.crashes) + self.parks
        assert interruptions <= MAX_INTERRUPTIONS, "the saga never ends"
        if self.deadline_after_parks == self.parks and not self.deadline_passed:
            await self.pass_deadline()
        if self.cancel_at == interruptions:
            await self.request_cancel()

    async def drive_to_the_end(self) -> None:
        """Drive until terminal: a new replica takes over after each crash and each park."""
        self.services.operator_cancel = self.request_cancel
        await self.between_drives()
        if self.deadline_passed or self.cancels:
            # Changed in the journal since it was placed: the first drive reads it back.
            self.placed = None
        while True:
            try:
                placed, self.placed = self.placed, None
                await self.runner().drive(
                    self.checkout_id, self.token, placed, first_started=placed is not None
                )
            except Crash as crash:
                self.crashes.append(str(crash))
            else:
                checkout, _ = await self.load()
                if checkout.status in ("completed", "failed"):
                    # Requests still held in the network reach the services only now.
                    self.services.deliver_late()
                    return
                # Parked: unfinished, lease given up, due again at next_attempt_at.
                assert checkout.status == "running"
                assert checkout.error is None
                assert (checkout.lease_owner, checkout.lease_expires_at) == (None, None)
                assert checkout.next_attempt_at is not None
                self.parks += 1
            await self.between_drives()
            await self.take_over()

    async def take_over(self) -> None:
        """A new replica claims the checkout once it is due; the previous owner is fenced out."""
        previous, previous_token = self.journal, self.token
        owner = f"replica-{len(self.crashes) + self.parks}"
        successor = Journal(self.database, owner=owner, lease_ttl_s=LEASE_TTL_S)
        with anyio.fail_after(5):
            while (token := await successor.claim(self.checkout_id)) is None:
                await anyio.sleep(LEASE_TTL_S)
        assert token == previous_token + 1
        self.journal, self.token = successor, token
        before = await self.snapshot()
        with pytest.raises(LeaseLostError):
            await previous.commit(
                self.checkout_id,
                previous_token,
                Transition(
                    {"status": "failed", "error": None},
                    {before[1][0]["name"]: {"status": "pending"}},
                ),
            )
        assert await self.snapshot() == before

    async def replay(self) -> None:
        """Drive the terminal checkout again, as its last owner and as a new replica: no change."""
        before, services_before = await self.snapshot(), self.services.state()
        calls = self.services.calls
        await self.runner().drive(self.checkout_id, self.token)
        late = Journal(self.database, owner="replica-late", lease_ttl_s=LEASE_TTL_S)
        assert await late.claim(self.checkout_id) is None
        await self.runner(late).drive(self.checkout_id, self.token + 1)
        assert await self.snapshot() == before
        assert self.services.state() == services_before
        assert self.services.calls == calls


async def start(
    database: Database,
    services: FakeServices,
    *,
    member: bool,
    order: list[str] | str,
    crash_points: CrashPoints | None = None,
    deadline_after_parks: int | None = None,
    cancel_at: int | None = None,
) -> Run:
    """Place a new checkout (deadline in an hour) as the API does, leased to replica-0 with
    token 1: recorded with its first steps started (``SagaRunner.first_start``).

    ``order``: the steps in sequence, or a plan as CHECKOUT_STEPS writes it (with groups).
    """
    plan = parse_plan(order if isinstance(order, str) else ",".join(order))
    journal = Journal(database, owner="replica-0", lease_ttl_s=LEASE_TTL_S)
    checkout = new_checkout(member=member, plan=str(plan), deadline_at=time.time() + 3600)
    first_start = SagaRunner(journal, fake_steps(services), POLICY).first_start
    placed = await journal.create(checkout, plan.order, start=first_start)
    assert checkout.lease_token == 1
    return Run(
        database,
        services,
        checkout.id,
        journal,
        1,
        crash_points or CrashPoints(),
        member,
        deadline_after_parks,
        cancel_at,
        placed=placed,
    )


def _effect_exists(services: FakeServices, checkout_id: str, step: str) -> bool:
    if step == "warehouse":
        return any(r["status"] != "voided" for r in services.reservations_of(checkout_id))
    if step == "rewards":
        return bool(services.transactions_of(checkout_id, "credit"))
    return bool(services.emails_of(checkout_id, "order_confirmation"))


async def assert_saga_invariants(run: Run) -> None:
    """Everything a terminal checkout promises, in the journal and in the services."""
    checkout, steps = await run.load()
    services, cid, member = run.services, str(run.checkout_id), run.member
    by_name = {s.name: s for s in steps}
    order = [s.name for s in sorted(steps, key=lambda s: s.position)]

    # Effects: once per natural key, each always asked for under one Idempotency-Key.
    assert [e for e, n in Counter(services.effects).items() if n > 1] == []
    assert {e: k for e, k in services.keys.items() if len(k) != 1} == {}
    reservations = [r for r in services.reservations_of(cid) if r["status"] != "voided"]
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
            assert (s.attempts, s.result) == (0, None), s
        else:
            assert s.attempts >= 1, s
            assert s.started_at is not None, s

    if checkout.status == "completed":
        assert not any(run.cancels), "a cancel was accepted, yet the checkout completed"
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

    # Failed: every effect undone, and the journal says which step was compensated.
    assert active == [], "a failed checkout still holds its reservation"
    assert sum(t["points"] for t in credits + reversals) == 0, "points left credited"
    assert len(reversals) == len(credits)
    assert len(cancellations) == len(confirmations)
    for s in steps:
        took_effect = _effect_exists(services, cid, s.name)
        assert (s.status == "compensated") == took_effect, s
        assert s.status in ("compensated", "failed", "skipped"), s
    failure = json.loads(checkout.error or "null")
    if failure.get("kind") == "cancelled":
        assert any(run.cancels), "cancelled without an accepted cancel"
        assert confirmations == [], "cancelled after the pivot"
        return
    if not run.deadline_passed:
        assert failure["kind"] == "StepRefusedError", (
            "failed for a transient error before the deadline"
        )
    failed = failure["step"]
    plan = parse_plan(checkout.step_order)
    assert plan.kind(failed) is not StepKind.RETRIABLE, "a step past the pivot failed the checkout"
    assert not plan.runs_to_completion(failed), f"{failed} is retried until it succeeds"
    group_of = {name: index for index, group in enumerate(plan.groups) for name in group}
    failing_group = group_of[failed]
    email_group = group_of["email"]
    if email_group != failing_group:
        assert len(confirmations) == (1 if email_group < failing_group else 0)
    for name in order:
        row = by_name[name]
        if group_of[name] < failing_group:
            skipped = name == "rewards" and not member
            assert row.status == ("skipped" if skipped else "compensated"), row
        elif group_of[name] > failing_group:
            assert row.status == "skipped", row
    # The failing step, and the others of its group (stopped, or settled then undone): checked
    # above against what took effect at the services.
    assert by_name[failed].status in ("compensated", "failed"), by_name[failed]
