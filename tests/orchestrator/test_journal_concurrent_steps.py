"""Steps of one checkout written at once (a concurrent group), on SQLite and PostgreSQL.

No lost update: two steps finishing together both land, whether their writes race in the
database (two transactions on the same checkout row) or queue on the replica's lease; and once
another replica took the lease over, both late writes are refused, writing nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict

import anyio
import pytest

from orchestrator.journal.journal import LeaseLostError
from orchestrator.journal.lease import LeasedCheckout
from orchestrator.journal.records import Transition
from orchestrator.statuses import CheckoutStatus, StepStatus
from tests.orchestrator.test_journal import (
    AT,
    STEPS,
    Store,
    a_checkout,
    bounded,
    orm_checkout,
    orm_steps,
    step_dicts,
    store,
)

pytestmark = pytest.mark.anyio
__all__ = ["store"]  # the fixture, imported to be used here

ROUNDS = 25


def finished(name: str, n: int) -> Transition:
    return Transition.of_step(
        name,
        status=StepStatus.succeeded,
        attempts=1,
        result=f'{{"{name}": {n}}}',
        http_status=201,
        finished_at=AT,
    )


@bounded
async def test_two_steps_committed_at_once_both_land(store: Store) -> None:
    """Two fenced writes of different steps racing in the database: neither overwrites the other."""
    journal = store.journal()
    for n in range(ROUNDS):
        checkout, _ = await journal.create(a_checkout(), STEPS)

        async def commit(name: str, checkout_id: uuid.UUID = checkout.id, n: int = n) -> None:
            await journal.commit(checkout_id, 1, finished(name, n))

        async with anyio.create_task_group() as group:
            group.start_soon(commit, "rewards")
            group.start_soon(commit, "email")

        rows = {row["name"]: row for row in orm_steps(store.orm, checkout.id)}
        for name in ("rewards", "email"):
            assert (rows[name]["status"], rows[name]["result"]) == (
                "succeeded",
                f'{{"{name}": {n}}}',
            )
        assert rows["warehouse"]["status"] == "pending"


@bounded
async def test_steps_of_a_group_write_through_one_lease_in_turn(store: Store) -> None:
    """Starts, successes kept for later and records, interleaved: the records are the rows."""
    journal = store.journal()
    leased = LeasedCheckout(journal, await journal.create(a_checkout(), STEPS), 1)
    leased.later(Transition.of_checkout(status=CheckoutStatus.running))

    async def step(name: str, keep: bool) -> None:
        await leased.record(
            Transition.of_step(name, status=StepStatus.running, attempts=1, started_at=AT)
        )
        await anyio.sleep(0)
        if keep:
            leased.later(finished(name, 1))
        else:
            await leased.record(finished(name, 1))

    async with anyio.create_task_group() as group:
        group.start_soon(step, "warehouse", True)
        group.start_soon(step, "rewards", False)
        group.start_soon(step, "email", True)
    await leased.record(Transition.of_checkout(status=CheckoutStatus.completed))

    checkout, steps = leased.loaded()
    assert asdict(checkout) == orm_checkout(store.orm, checkout.id)
    assert step_dicts(steps) == step_dicts((await journal.load(checkout.id) or (None, []))[1])
    assert [row["status"] for row in orm_steps(store.orm, checkout.id)] == ["succeeded"] * 3


@bounded
async def test_a_replica_that_lost_the_lease_writes_neither_step(store: Store) -> None:
    """After a takeover, both of the old owner's concurrent step writes are refused; the new
    owner's land."""
    old = store.journal("replica-a")
    checkout, _ = await old.create(a_checkout(), STEPS)
    await old.commit(
        checkout.id,
        1,
        Transition(
            {"status": CheckoutStatus.running},
            {
                "rewards": {"status": StepStatus.running, "attempts": 1},
                "email": {"status": StepStatus.running, "attempts": 1},
            },
        ),
    )
    await old.let_go(checkout.id, 1)  # as if its lease had expired
    new = store.journal("replica-b")
    assert await new.claim(checkout.id) == 2
    before = orm_steps(store.orm, checkout.id)

    refused: list[str] = []

    async def late(name: str) -> None:
        try:
            await old.commit(checkout.id, 1, finished(name, 1))
        except LeaseLostError:
            refused.append(name)

    async with anyio.create_task_group() as group:
        group.start_soon(late, "rewards")
        group.start_soon(late, "email")

    assert sorted(refused) == ["email", "rewards"]
    assert orm_steps(store.orm, checkout.id) == before
    await new.commit(checkout.id, 2, finished("rewards", 2).then(finished("email", 2)))
    rows = {row["name"]: row for row in orm_steps(store.orm, checkout.id)}
    assert rows["rewards"]["result"] == '{"rewards": 2}'
    assert rows["email"]["result"] == '{"email": 2}'
