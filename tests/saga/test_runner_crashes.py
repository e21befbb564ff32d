"""The saga runner at each crash point, on parking, cancel and fencing: one readable case each.

The same harness as the property tests (``harness.py``): in-memory services, a real journal on
SQLite, a new replica taking over after every crash or park.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.journal.journal import Journal, LeaseLostError
from orchestrator.journal.records import StepRecord, Transition
from orchestrator.saga.runner import SagaRunner
from servicekit.db.database import Database
from tests.saga.fake_steps import fake_steps
from tests.saga.fakes import CrashAt, FakeServices, Fault, FaultPlan
from tests.saga.harness import (
    POLICY,
    Run,
    assert_saga_invariants,
    journal_database,
    new_checkout,
    start,
)

pytestmark = pytest.mark.anyio

ORDER = ["warehouse", "rewards", "email"]
FORWARD_POINTS = [f"{s}:{p}" for s in ORDER for p in ("before_call", "after_call")]


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    async with journal_database(tmp_path / "orchestrator.db") as database:
        yield database


async def drive(
    database: Database,
    *,
    order: list[str] = ORDER,
    member: bool = True,
    faults: dict[tuple[str, str], list[Fault]] | None = None,
    points: Iterable[str] = (),
    **when: Any,
) -> Run:
    """Drive one checkout to its end across crashes and parks; check it; drive it again."""
    services = FakeServices(FaultPlan(faults))
    run = await start(
        database, services, member=member, order=order, crash_points=CrashAt(points), **when
    )
    await run.drive_to_the_end()
    await assert_saga_invariants(run)
    await run.replay()
    return run


def step(steps: list[StepRecord], name: str) -> StepRecord:
    return next(s for s in steps if s.name == name)


def statuses(steps: list[StepRecord]) -> list[str]:
    return [s.status for s in sorted(steps, key=lambda s: s.position)]


def calls(run: Run, service: str, action: str) -> int:
    return sum(1 for s, a, _ in run.services.plan.taken if (s, a) == (service, action))


async def test_a_checkout_without_faults_completes(database: Database) -> None:
    """With no fault, one replica completes the checkout: one reservation, one credit, one email."""
    run = await drive(database)
    checkout, steps = await run.load()
    assert checkout.status == "completed"
    assert (run.crashes, run.parks, run.token) == ([], 0, 1)
    assert {s.attempts for s in steps} == {1}


@pytest.mark.parametrize("point", FORWARD_POINTS)
async def test_a_crash_around_a_forward_call_is_resumed_by_another_replica(
    database: Database, point: str
) -> None:
    """A replica dying just before or after a step's call hands over; each effect happens once."""
    run = await drive(database, points=[point])
    checkout, steps = await run.load()
    name = point.split(":")[0]
    assert checkout.status == "completed"
    assert (run.crashes, run.token) == ([point], 2)
    assert step(steps, name).attempts == 2
    assert calls(run, name, "execute") == (2 if point.endswith("after_call") else 1)
    assert sorted(effect for effect, _ in run.services.effects) == [
        "credit",
        "email:order_confirmation",
        "reserve",
    ]


@pytest.mark.parametrize(
    ("point", "order", "refused"),
    [
        ("warehouse:before_compensate", ["warehouse", "email", "rewards"], "rewards"),
        ("warehouse:after_compensate", ["warehouse", "email", "rewards"], "rewards"),
        ("email:before_compensate", ["rewards", "email", "warehouse"], "warehouse"),
        ("email:after_compensate", ["rewards", "email", "warehouse"], "warehouse"),
        ("rewards:before_compensate", ["rewards", "email", "warehouse"], "warehouse"),
        ("rewards:after_compensate", ["rewards", "email", "warehouse"], "warehouse"),
    ],
)
async def test_a_crash_around_a_compensation_is_resumed_by_another_replica(
    database: Database, point: str, order: list[str], refused: str
) -> None:
    """A replica dying just before or after undoing a step hands over; every effect is undone once."""
    run = await drive(
        database, order=order, faults={(refused, "execute"): [Fault.REFUSE]}, points=[point]
    )
    checkout, steps = await run.load()
    assert checkout.status == "failed"
    assert run.crashes == [point]
    assert json.loads(checkout.error or "")["step"] == refused
    assert step(steps, refused).status == "failed"
    assert {s.status for s in steps if s.name != refused} == {"compensated"}
    assert len(run.services.emails_of(str(run.checkout_id), "order_cancelled")) == 1


@pytest.mark.parametrize("failing", ["warehouse", "rewards"])
async def test_a_request_still_on_its_way_when_the_checkout_failed_is_refused_on_arrival(
    database: Database, failing: str
) -> None:
    """Requests held in the network past the deadline: the void bars them, so they land as refusals."""
    faults = {(failing, "execute"): [Fault.LATE] * 3}
    run = await drive(database, faults=faults, deadline_after_parks=0)
    checkout, steps = await run.load()
    cid = str(run.checkout_id)
    assert checkout.status == "failed"
    assert json.loads(checkout.error or "")["deadline_passed"] is True
    assert run.services.held == []  # delivered after the checkout ended
    assert step(steps, failing).status == "failed"  # never took effect, and never will
    effect = "reserve" if failing == "warehouse" else "credit"
    assert (effect, cid) not in run.services.effects
    if failing == "warehouse":
        assert [r["status"] for r in run.services.reservations_of(cid)] == ["voided"]
    else:
        assert step(steps, "warehouse").status == "compensated"
        assert run.services.transactions_of(cid, "credit") == []


async def test_a_refusal_after_a_timed_out_attempt_still_voids_the_step(
    database: Database,
) -> None:
    """A reservation refused on its second attempt may have landed on its first: it is voided too."""
    faults = {("warehouse", "execute"): [Fault.LATE, Fault.REFUSE]}
    run = await drive(database, faults=faults)
    checkout, steps = await run.load()
    cid = str(run.checkout_id)
    assert checkout.status == "failed"
    assert json.loads(checkout.error or "")["kind"] == "StepRefusedError"
    assert step(steps, "warehouse").status == "failed"
    assert [r["status"] for r in run.services.reservations_of(cid)] == ["voided"]
    assert ("reserve", cid) not in run.services.effects


@pytest.mark.parametrize("failing", ["warehouse", "rewards"])
async def test_a_crash_while_retrying_the_failed_steps_compensation_still_undoes_it(
    database: Database, failing: str
) -> None:
    """The failed step's effect is still undone when its compensation erred once, then a replica died."""
    faults = {
        (failing, "execute"): [Fault.LOST] * 3,  # applied, answers lost: voided, so undone
        (failing, "compensate"): [Fault.TRANSIENT, Fault.CRASH_BEFORE],
    }
    services = FakeServices(FaultPlan(faults))
    run = await start(database, services, member=True, order=ORDER, deadline_after_parks=0)
    await run.drive_to_the_end()
    checkout, steps = await run.load()
    cid = str(run.checkout_id)
    assert checkout.status == "failed"
    assert len(run.crashes) == 1
    if failing == "warehouse":
        assert services.reservations_of(cid)[0]["status"] == "released", "reservation leaked"
    else:
        assert services.transactions_of(cid, "reversal") != [], "points left credited"
    assert step(steps, failing).status == "compensated"
    await assert_saga_invariants(run)


async def test_an_outage_before_the_deadline_parks_the_checkout_until_it_passes(
    database: Database,
) -> None:
    """A step out of attempts before the deadline parks the checkout; a replica resumes and completes it."""
    faults = {("rewards", "execute"): [Fault.LOST] * 3 + [Fault.TRANSIENT] * 3}
    run = await drive(database, faults=faults)
    checkout, steps = await run.load()
    assert checkout.status == "completed"
    assert (run.parks, run.crashes) == (2, [])
    assert step(steps, "rewards").attempts == 7
    assert len(run.services.transactions_of(str(run.checkout_id), "credit")) == 1


async def test_an_outage_past_the_deadline_fails_and_compensates(database: Database) -> None:
    """Once the deadline has passed, a step out of attempts fails the checkout; earlier steps are undone."""
    run = await drive(
        database, faults={("rewards", "execute"): [Fault.TRANSIENT] * 6}, deadline_after_parks=1
    )
    checkout, steps = await run.load()
    assert checkout.status == "failed"
    assert run.parks == 1
    assert json.loads(checkout.error or "")["deadline_passed"] is True
    assert statuses(steps) == ["compensated", "failed", "skipped"]


async def test_a_cancel_before_the_pivot_fails_and_compensates(database: Database) -> None:
    """An operator's cancel while the reservation is made stops the checkout before the email."""
    run = await drive(database, faults={("warehouse", "execute"): [Fault.CANCEL]})
    checkout, steps = await run.load()
    assert run.cancels == [True]
    assert checkout.status == "failed"
    assert json.loads(checkout.error or "")["kind"] == "cancelled"
    assert statuses(steps) == ["compensated", "skipped", "skipped"]
    assert run.services.emails == {}


async def test_a_cancel_after_the_pivot_is_refused(database: Database) -> None:
    """Once the confirmation email step has started, a cancel is refused and the checkout completes."""
    run = await drive(database, faults={("email", "execute"): [Fault.CANCEL]})
    checkout, _ = await run.load()
    assert run.cancels == [False]
    assert checkout.status == "completed"


async def test_a_cancel_while_parked_undoes_the_parked_step(database: Database) -> None:
    """A parked checkout cancelled by an operator undoes the step that may have applied, and all before it."""
    run = await drive(database, faults={("rewards", "execute"): [Fault.LOST] * 3}, cancel_at=1)
    checkout, steps = await run.load()
    assert (run.parks, run.cancels) == (1, [True])
    assert json.loads(checkout.error or "")["kind"] == "cancelled"
    assert statuses(steps) == ["compensated", "compensated", "skipped"]


async def test_a_live_lease_cannot_be_claimed_and_a_lost_one_fences_the_old_owner(
    database: Database,
) -> None:
    """No replica claims a live lease; once another took it, the old owner can neither write nor call."""
    services = FakeServices()
    old = Journal(database, owner="old", lease_ttl_s=30)
    checkout = new_checkout(member=True, plan=",".join(ORDER), deadline_at=None)
    await old.create(checkout, ORDER)
    new = Journal(database, owner="new", lease_ttl_s=30)
    assert await new.claim(checkout.id) is None
    await old.let_go(checkout.id, 1)
    assert await new.claim(checkout.id) == 2

    with pytest.raises(LeaseLostError):
        await old.commit(checkout.id, 1, Transition.of_checkout(status="failed"))
    with pytest.raises(LeaseLostError):
        await SagaRunner(old, fake_steps(services), POLICY).drive(checkout.id, 1)
    assert services.calls == 0
    await SagaRunner(new, fake_steps(services), POLICY).drive(checkout.id, 2)
    loaded = await new.load(checkout.id)
    assert loaded is not None
    assert loaded[0].status == "completed"


@pytest.mark.parametrize("refused", [None, "warehouse", "rewards"])
async def test_a_terminal_checkout_driven_again_changes_nothing(
    database: Database, refused: str | None
) -> None:
    """Driving a completed or failed checkout again, as its owner or a new replica, changes nothing."""
    faults = {(refused, "execute"): [Fault.REFUSE]} if refused else {}
    run = await drive(database, faults=faults)
    await run.replay()
    checkout, _ = await run.load()
    assert checkout.status == ("failed" if refused else "completed")


@pytest.mark.parametrize(
    ("member", "driven"),
    [
        (True, "placed"),
        (False, "placed"),
        (True, "as created"),
        (False, "as created"),
        (True, "read back"),
    ],
)
async def test_every_call_finds_its_step_and_all_before_it_committed(
    database: Database, member: bool, driven: str
) -> None:
    """A success is committed with the next step's start, never later than the next call.

    At each call, a separate reader sees the step ``running`` (its attempt counted) and every
    step before it ``succeeded`` or ``skipped``. A checkout that completes at once costs four
    fenced transactions after its insert (a member's), whether it is driven from what its
    creator recorded or read back from the journal; one fewer when placed as the API places
    it, its insert starting the first step.
    """
    services = FakeServices()
    journal = Journal(database, owner="here", lease_ttl_s=30)
    checkout = new_checkout(member=member, plan=",".join(ORDER), deadline_at=None)
    steps = fake_steps(services)
    first_start = SagaRunner(journal, steps, POLICY).first_start
    recorded = await journal.create(
        checkout, ORDER, start=first_start if driven == "placed" else None
    )
    reader = Journal(database, owner="reader", lease_ttl_s=30)
    seen: dict[str, dict[str, str]] = {}
    attempts: dict[str, int] = {}

    def watched(name: str, execute: Any) -> Any:
        async def execute_after_reading(ctx: Any) -> Any:
            loaded = await reader.load(checkout.id)
            assert loaded is not None
            assert loaded[0].status == "running"
            seen[name] = {row.name: row.status for row in loaded[1]}
            attempts[name] = next(row.attempts for row in loaded[1] if row.name == name)
            return await execute(ctx)

        return execute_after_reading

    for name, step in steps.items():
        step.execute = watched(name, step.execute)  # type: ignore[method-assign]
    fenced = 0
    commit = journal.commit

    async def counted(*args: Any, **kwargs: Any) -> Transition:
        nonlocal fenced
        fenced += 1
        return await commit(*args, **kwargs)

    journal.commit = counted  # type: ignore[method-assign]
    runner = SagaRunner(journal, steps, POLICY)
    await runner.drive(
        checkout.id,
        1,
        None if driven == "read back" else recorded,
        first_started=driven == "placed",
    )

    rewards = "succeeded" if member else "skipped"
    assert seen["warehouse"] == {"warehouse": "running", "rewards": "pending", "email": "pending"}
    if member:
        assert seen["rewards"] == {
            "warehouse": "succeeded",
            "rewards": "running",
            "email": "pending",
        }
    assert seen["email"] == {"warehouse": "succeeded", "rewards": rewards, "email": "running"}
    assert set(seen) == ({"warehouse", "rewards", "email"} if member else {"warehouse", "email"})
    loaded = await reader.load(checkout.id)
    assert loaded is not None
    assert loaded[0].status == "completed"
    assert {row.name: row.status for row in loaded[1]} == {
        "warehouse": "succeeded",
        "rewards": rewards,
        "email": "succeeded",
    }
    assert all(row.result for row in loaded[1] if row.status == "succeeded")
    assert fenced == (4 if member else 3) - (driven == "placed")
    assert set(attempts.values()) == {1}
