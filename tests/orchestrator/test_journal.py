"""The orchestrator's journal (``orchestrator.journal``) on SQLite and PostgreSQL.

The rows its plain SQL writes are the rows the ORM models (the schema) write and read; one
commit moves the checkout and several steps, or nothing; fenced writes are refused, writing
nothing, once the lease is lost or a cancellation is asked for; idempotency keys are unique;
leases are claimed, parked and given up; lists page by keyset and statuses are counted.

The schema is made by the migrations, as in production; rows are read back through a SQLModel
session on a separate engine, never through the journal under test.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import psycopg
import pytest
from sqlalchemy import Engine, func, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from orchestrator.journal import checkouts, records
from orchestrator.journal.journal import (
    CancelRequestedError,
    Journal,
    LeaseLostError,
    is_duplicate_key,
)
from orchestrator.journal.lease import LeasedCheckout
from orchestrator.journal.records import (
    CHECKOUT_COLUMNS,
    CheckoutRecord,
    Loaded,
    StepRecord,
    Transition,
)
from orchestrator.migrations import HISTORY
from orchestrator.models import Checkout, Step
from orchestrator.statuses import CheckoutStatus, StepStatus
from servicekit.db.database import Database
from servicekit.db.engines import create_sync_engine
from servicekit.db.urls import postgres_conninfo
from servicekit.migrations import upgrade

pytestmark = pytest.mark.anyio

STEPS = ["warehouse", "rewards", "email"]
LEASE_TTL_S = 30.0
# No microseconds: they are still written (SQLAlchemy's SQLite format always has them).
AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
# 03:06:07.123456 UTC, given in another zone: stored and read back in UTC.
STARTED = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=timezone(timedelta(hours=2)))
# Bounds every test: a journal call that hangs (a lock never released) fails instead.
TEST_TIMEOUT_S = 20


@dataclass
class Store:
    """The journal's database, and an ORM engine on the same database to read it back."""

    database: Database
    orm: Engine

    def journal(self, owner: str = "replica-a") -> Journal:
        return Journal(self.database, owner=owner, lease_ttl_s=LEASE_TTL_S)


@pytest.fixture
async def store(database_url: Callable[[str], str]) -> AsyncIterator[Store]:
    """A new orchestrator database at the migrations' head revision."""
    url = database_url("orchestrator")
    await anyio.to_thread.run_sync(upgrade, url, HISTORY)
    database = Database.open(url, name="test-journal")
    orm = create_sync_engine(url)
    try:
        yield Store(database, orm)
    finally:
        await database.close()
        orm.dispose()


def bounded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Fail the test after ``TEST_TIMEOUT_S`` instead of hanging (pytest still sees its fixtures)."""

    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> None:
        with anyio.fail_after(TEST_TIMEOUT_S):
            await test(*args, **kwargs)

    return run


def a_checkout(
    *, key: str | None = None, customer_id: str = "c-42", created_at: datetime = AT
) -> CheckoutRecord:
    """A checkout as ``orchestrator.api._new_checkout`` fills it: 2 x 19.99 USD."""
    customer = {"id": customer_id, "email": "ada@example.com", "rewards_member": True}
    checkout = records.new_checkout(
        customer_id=customer_id,
        customer=json.dumps(customer),
        items=json.dumps([{"sku": "SKU-001", "quantity": 2, "unit_price": "19.99"}]),
        currency="USD",
        total_cents=3998,
        points=39,
        step_order=",".join(STEPS),
        deadline_at=1_900_000_000.5,
        idempotency_key_hash=key,
        request_fingerprint="f" * 64 if key else None,
    )
    checkout.created_at = checkout.updated_at = created_at
    return checkout


# --- reading back through the ORM ----------------------------------------------------------


def orm_checkout(orm: Engine, checkout_id: uuid.UUID) -> dict[str, Any] | None:
    """The checkout row as the model reads it."""
    with Session(orm) as session:
        row = session.get(Checkout, checkout_id)
        return None if row is None else row.model_dump()


def orm_steps(orm: Engine, checkout_id: uuid.UUID) -> list[dict[str, Any]]:
    """The checkout's step rows as the model reads them, in order."""
    with Session(orm) as session:
        query = (
            select(Step).where(col(Step.checkout_id) == checkout_id).order_by(col(Step.position))
        )
        return [row.model_dump() for row in session.exec(query).all()]


def snapshot(orm: Engine, checkout_id: uuid.UUID) -> tuple[Any, list[dict[str, Any]]]:
    """Everything the database holds of one checkout."""
    return orm_checkout(orm, checkout_id), orm_steps(orm, checkout_id)


def count_checkouts(orm: Engine, **where: Any) -> int:
    with Session(orm) as session:
        query = select(func.count()).select_from(Checkout)
        for column, value in where.items():
            query = query.where(getattr(Checkout, column) == value)
        return int(session.exec(query).one())


def raw_rows(orm: Engine, table: str, checkout_id: uuid.UUID) -> list[dict[str, Any]]:
    """Rows as the driver returns them (no column types), with SQLite's storage classes."""
    model = Checkout if table == "checkout" else Step
    names = list(model.__table__.columns.keys())  # type: ignore[attr-defined]
    listed = ", ".join(names)
    sqlite = orm.dialect.name == "sqlite"
    if sqlite:
        listed += ", " + ", ".join(f"typeof({name}) AS {name}_storage" for name in names)
    key = "id" if table == "checkout" else "checkout_id"
    with orm.connect() as connection:
        result = connection.execute(
            text(f"SELECT {listed} FROM {table} WHERE {key} = :id"),
            {"id": checkout_id.hex if sqlite else checkout_id},
        )
        rows = [dict(row._mapping) for row in result]
    return sorted(rows, key=lambda row: row.get("position", 0))


def without(rows: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in keys} for row in rows]


def step_dicts(steps: list[StepRecord], *, ids: bool = False) -> list[dict[str, Any]]:
    """Steps as dicts in order; without their ids (a new checkout's records have none)."""
    ordered = sorted(steps, key=lambda step: step.position)
    return [{k: v for k, v in asdict(s).items() if ids or k != "id"} for s in ordered]


def applied(loaded: Loaded, written: Transition) -> Loaded:
    """``loaded`` once ``written`` (what ``Journal.commit`` returned) is applied to it."""
    checkout, steps = loaded
    by_name = {step.name: step for step in steps}
    written.apply(checkout, by_name)
    return checkout, steps


# --- the rows --------------------------------------------------------------------------------


@bounded
async def test_the_journal_writes_the_rows_the_orm_writes_and_reads(store: Store) -> None:
    """A checkout created and moved on by the journal is stored exactly as through the ORM, and
    reads back through the models with the values written (uuids, UTC-aware times, JSON)."""
    journal = store.journal()
    created = await journal.create(a_checkout(key="a" * 64), STEPS)
    by_journal = created[0]
    assert (by_journal.lease_owner, by_journal.lease_token) == ("replica-a", 1)

    # The same checkout, written by the ORM session as the schema's types store it.
    twin = a_checkout(key="b" * 64)
    twin_values = {c: getattr(twin, c) for c in CHECKOUT_COLUMNS}
    twin_values |= {c: getattr(by_journal, c) for c in ("lease_owner", "lease_token")}
    twin_values["lease_expires_at"] = by_journal.lease_expires_at
    with Session(store.orm) as session:
        session.add(Checkout(**twin_values))
        for position, name in enumerate(STEPS):
            session.add(Step(checkout_id=twin.id, name=name, position=position))
        session.commit()

    result = {"reservation_id": "r-1", "lines": [{"sku": "SKU-001", "quantity": 2}]}
    warehouse = {"status": StepStatus.succeeded, "attempts": 2, "http_status": 201}
    warehouse |= {"result": json.dumps(result), "error": None}
    warehouse |= {"started_at": STARTED, "finished_at": AT}
    rewards = {"status": StepStatus.running, "attempts": 1, "started_at": AT}
    moved = {"status": CheckoutStatus.running, "past_pivot": True, "error": '{"kind": "x"}'}
    written = await journal.commit(
        by_journal.id, 1, Transition(moved, {"warehouse": warehouse, "rewards": rewards})
    )
    # What the journal added: the time of the write and the renewed lease.
    assert set(written.checkout) == {*moved, "updated_at", "lease_expires_at"}
    with Session(store.orm) as session:
        row = session.get(Checkout, twin.id)
        assert row is not None
        for column, value in (moved | written.checkout).items():
            setattr(row, column, value)
        session.add(row)
        for name, values in (("warehouse", warehouse), ("rewards", rewards)):
            step = session.exec(
                select(Step).where(col(Step.checkout_id) == twin.id, col(Step.name) == name)
            ).one()
            for column, value in values.items():
                setattr(step, column, value)
            session.add(step)
        session.commit()

    # Stored alike, byte for byte (on SQLite: the same storage classes too).
    differing = ("id", "checkout_id", "idempotency_key_hash")
    journal_checkout = raw_rows(store.orm, "checkout", by_journal.id)
    orm_checkout_rows = raw_rows(store.orm, "checkout", twin.id)
    assert len(journal_checkout) == 1
    assert without(journal_checkout, *differing) == without(orm_checkout_rows, *differing)
    journal_steps = raw_rows(store.orm, "step", by_journal.id)
    assert [row["name"] for row in journal_steps] == STEPS
    assert without(journal_steps, *differing) == without(
        raw_rows(store.orm, "step", twin.id), *differing
    )
    if store.orm.dialect.name == "sqlite":
        # CHAR(32) uuids and naive UTC text with microseconds, as SQLAlchemy's types store them.
        assert journal_checkout[0]["id"] == by_journal.id.hex
        assert journal_steps[0]["checkout_id"] == by_journal.id.hex
        assert journal_checkout[0]["created_at"] == "2026-03-04 05:06:07.000000"
        assert journal_steps[0]["started_at"] == "2026-03-04 03:06:07.123456"
        assert journal_checkout[0]["past_pivot_storage"] == "integer"

    # Read through the models: the values the journal was given.
    expected_checkout, expected_steps = applied(created, written)
    through_orm = orm_checkout(store.orm, by_journal.id)
    assert through_orm == asdict(expected_checkout)
    assert through_orm["id"] == by_journal.id
    assert through_orm["status"] == "running"
    assert through_orm["past_pivot"] is True
    assert through_orm["cancel_requested"] is False
    assert through_orm["total_cents"] == 3998
    assert through_orm["lease_token"] == 1
    assert through_orm["created_at"] == AT
    assert through_orm["created_at"].tzinfo is UTC
    assert through_orm["updated_at"].tzinfo is UTC
    steps = orm_steps(store.orm, by_journal.id)
    assert without(steps, "id") == step_dicts(expected_steps)
    assert all(isinstance(step["id"], int) for step in steps)
    assert [step["checkout_id"] for step in steps] == [by_journal.id] * 3
    assert [(s["name"], s["position"], s["status"], s["attempts"]) for s in steps] == [
        ("warehouse", 0, "succeeded", 2),
        ("rewards", 1, "running", 1),
        ("email", 2, "pending", 0),
    ]
    assert steps[0]["started_at"] == datetime(2026, 3, 4, 3, 6, 7, 123456, tzinfo=UTC)
    assert steps[0]["started_at"].tzinfo is UTC
    assert steps[0]["finished_at"] == AT
    assert json.loads(steps[0]["result"]) == result
    assert steps[2]["started_at"] is None

    # And the journal reads what the ORM wrote, as the ORM reads it.
    loaded = await journal.load(twin.id)
    assert loaded is not None
    assert asdict(loaded[0]) == orm_checkout(store.orm, twin.id)
    assert step_dicts(loaded[1], ids=True) == orm_steps(store.orm, twin.id)
    assert await journal.load(uuid.uuid4()) is None


@bounded
async def test_a_checkout_inserted_with_its_first_start_stores_the_started_steps(
    store: Store,
) -> None:
    """``create`` with ``start``: the checkout and its steps are stored as the start left them
    (running, attempt counted, started; skipped and finished), in the insert's one transaction;
    a start that would write a column the insert does not is refused, inserting nothing."""
    journal = store.journal()

    def first_start(loaded: Loaded) -> Transition:
        assert [step.status for step in loaded[1]] == [StepStatus.pending] * 3
        return Transition(
            {"status": CheckoutStatus.running, "past_pivot": True},
            {
                "warehouse": {"status": StepStatus.running, "attempts": 1, "started_at": STARTED},
                "rewards": {"status": StepStatus.skipped, "finished_at": AT},
            },
        )

    created = await journal.create(a_checkout(), STEPS, start=first_start)
    checkout_id = created[0].id
    assert orm_checkout(store.orm, checkout_id) == asdict(created[0])
    assert without(orm_steps(store.orm, checkout_id), "id") == step_dicts(created[1])
    through_orm = orm_checkout(store.orm, checkout_id)
    assert through_orm is not None
    assert (through_orm["status"], through_orm["past_pivot"]) == ("running", True)
    steps = orm_steps(store.orm, checkout_id)
    assert [(s["status"], s["attempts"]) for s in steps] == [
        ("running", 1),
        ("skipped", 0),
        ("pending", 0),
    ]
    assert steps[0]["started_at"] == STARTED
    assert steps[1]["finished_at"] == AT
    assert (steps[2]["started_at"], steps[2]["finished_at"]) == (None, None)

    def too_much(_: Loaded) -> Transition:
        return Transition.of_step("warehouse", status=StepStatus.running, result="{}")

    with pytest.raises(ValueError, match="writes only"):
        await journal.create(a_checkout(), STEPS, start=too_much)
    assert count_checkouts(store.orm) == 1


@bounded
async def test_a_leased_checkouts_records_are_the_rows_it_committed(store: Store) -> None:
    """The records a ``LeasedCheckout`` keeps after each write are the rows the journal holds."""
    journal = store.journal()
    leased = LeasedCheckout(journal, await journal.create(a_checkout(), STEPS), 1)
    leased.later(Transition.of_checkout(status=CheckoutStatus.running))
    await leased.record(
        Transition.of_step("warehouse", status=StepStatus.running, attempts=1, started_at=AT)
    )
    leased.later(Transition.of_step("warehouse", status=StepStatus.succeeded, finished_at=AT))
    # Kept, not written: the database still has the step running.
    assert orm_steps(store.orm, leased.checkout_id)[0]["status"] == "running"
    await leased.record(Transition.of_step("rewards", status=StepStatus.running, attempts=1))

    checkout, steps = leased.loaded()
    loaded = await journal.load(leased.checkout_id)
    assert loaded is not None
    assert asdict(loaded[0]) == asdict(checkout) == orm_checkout(store.orm, leased.checkout_id)
    assert step_dicts(loaded[1]) == step_dicts(steps)
    assert [s["status"] for s in orm_steps(store.orm, leased.checkout_id)] == [
        "succeeded",
        "running",
        "pending",
    ]


# --- one transaction -------------------------------------------------------------------------


@bounded
async def test_one_commit_moves_several_steps_and_the_checkout_or_none(store: Store) -> None:
    """One commit writes the checkout and several steps together (a step given twice keeps its
    later values); when one step's write fails, none of them, nor the checkout's, is written."""
    journal = store.journal()
    checkout_id = (await journal.create(a_checkout(), STEPS))[0].id
    together = (
        Transition.of_checkout(status=CheckoutStatus.running)
        .then(Transition.of_step("warehouse", status=StepStatus.running, attempts=1))
        .then(Transition.of_step("warehouse", status=StepStatus.succeeded, result='{"id": "r-1"}'))
        .then(Transition.of_step("rewards", status=StepStatus.running, attempts=1))
    )
    await journal.commit(checkout_id, 1, together)
    checkout, steps = snapshot(store.orm, checkout_id)
    assert checkout is not None
    assert checkout["status"] == "running"
    assert [(s["status"], s["attempts"], s["result"]) for s in steps] == [
        ("succeeded", 1, '{"id": "r-1"}'),
        ("running", 1, None),
        ("pending", 0, None),
    ]

    before = snapshot(store.orm, checkout_id)
    # The checkout's write and the first step's are valid; the second step's breaks NOT NULL.
    failing = Transition(
        {"past_pivot": True, "status": CheckoutStatus.running},
        {
            "rewards": {"status": StepStatus.succeeded, "finished_at": AT},
            "email": {"status": StepStatus.running, "attempts": None},
        },
    )
    with pytest.raises(IntegrityError):
        await journal.commit(checkout_id, 1, failing)
    assert snapshot(store.orm, checkout_id) == before

    # The failed transaction left nothing behind: the same lease writes the same change.
    fixed = Transition(
        failing.checkout, failing.steps | {"email": {"status": StepStatus.running, "attempts": 1}}
    )
    await journal.commit(checkout_id, 1, fixed)
    checkout, steps = snapshot(store.orm, checkout_id)
    assert checkout is not None
    assert checkout["past_pivot"] is True
    assert [(s["status"], s["attempts"]) for s in steps] == [
        ("succeeded", 1),
        ("succeeded", 1),
        ("running", 1),
    ]
    assert steps[1]["finished_at"] == AT


@bounded
async def test_a_terminal_commit_ends_the_lease(store: Store) -> None:
    """Committing a terminal status clears the lease's owner, expiry and any parking."""
    journal = store.journal()
    checkout_id = (await journal.create(a_checkout(), STEPS))[0].id
    before = orm_checkout(store.orm, checkout_id)
    assert before is not None
    assert before["lease_owner"] == "replica-a"
    assert before["lease_expires_at"] > time.time()
    written = await journal.commit(
        checkout_id, 1, Transition.of_checkout(status=CheckoutStatus.completed)
    )
    assert written.checkout["lease_owner"] is None
    after = orm_checkout(store.orm, checkout_id)
    assert after is not None
    assert after["status"] == "completed"
    assert (after["lease_owner"], after["lease_expires_at"], after["next_attempt_at"]) == (
        None,
        None,
        None,
    )
    assert after["lease_token"] == 1
    assert after["updated_at"] > before["updated_at"]


# --- fencing ---------------------------------------------------------------------------------


@bounded
async def test_a_stale_lease_cannot_write(store: Store) -> None:
    """A commit with a token no longer the lease's (claimed again, or by another replica) raises
    LeaseLostError and writes nothing; the lease's holder commits go through."""
    old, new = store.journal("replica-a"), store.journal("replica-b")
    checkout_id = (await old.create(a_checkout(), STEPS))[0].id
    late = Transition(
        {"status": CheckoutStatus.running},
        {"warehouse": {"status": StepStatus.succeeded, "attempts": 1}},
    )
    # The same replica claimed it again (a restart): its earlier token is stale.
    await old.let_go(checkout_id, 1)
    assert await old.claim(checkout_id) == 2
    before = snapshot(store.orm, checkout_id)
    with pytest.raises(LeaseLostError):
        await old.commit(checkout_id, 1, late)
    assert snapshot(store.orm, checkout_id) == before

    assert await new.claim(checkout_id) is None  # a live lease is not taken
    await old.let_go(checkout_id, 2)
    assert await new.claim(checkout_id) == 3
    before = snapshot(store.orm, checkout_id)
    assert before[0] is not None
    assert (before[0]["lease_owner"], before[0]["lease_token"]) == ("replica-b", 3)
    # Another replica holds it: no token of the old owner's writes, not even the current one.
    for token, unless_cancelled in ((2, False), (2, True), (3, False)):
        with pytest.raises(LeaseLostError):
            await old.commit(checkout_id, token, late, unless_cancelled=unless_cancelled)
    with pytest.raises(LeaseLostError):
        await old.commit(checkout_id, 2, Transition.of_checkout(status=CheckoutStatus.failed))
    await old.let_go(checkout_id, 2)  # ends nothing: the lease is not its own
    assert snapshot(store.orm, checkout_id) == before

    await new.commit(checkout_id, 3, late)
    checkout, steps = snapshot(store.orm, checkout_id)
    assert checkout is not None
    assert (checkout["status"], checkout["lease_owner"], checkout["lease_token"]) == (
        "running",
        "replica-b",
        3,
    )
    assert (steps[0]["status"], steps[0]["attempts"]) == ("succeeded", 1)
    with pytest.raises(LeaseLostError):
        await new.commit(uuid.uuid4(), 1, late)  # no such checkout


@bounded
async def test_a_requested_cancel_refuses_writes_unless_cancelled(store: Store) -> None:
    """After an operator asks to cancel, a commit ``unless_cancelled`` raises
    CancelRequestedError and writes nothing; the compensation's commits still go through."""
    journal = store.journal()
    leased = LeasedCheckout(journal, await journal.create(a_checkout(), STEPS), 1)
    checkout_id = leased.checkout_id
    await leased.record(
        Transition(
            {"status": CheckoutStatus.running},
            {"warehouse": {"status": StepStatus.running, "attempts": 1}},
        ),
        unless_cancelled=True,
    )
    assert await journal.request_cancel(checkout_id)
    flagged = orm_checkout(store.orm, checkout_id)
    assert flagged is not None
    assert flagged["cancel_requested"] is True

    before = snapshot(store.orm, checkout_id)
    leased.later(Transition.of_step("warehouse", status=StepStatus.succeeded, finished_at=AT))
    email = Transition({"past_pivot": True}, {"email": {"status": StepStatus.running}})
    with pytest.raises(CancelRequestedError):
        await leased.record(email, unless_cancelled=True)
    assert snapshot(store.orm, checkout_id) == before

    # The write recording the cancellation commits what was kept as well.
    await leased.record(
        Transition.of_step("warehouse", status=StepStatus.compensated, compensated_at=AT)
    )
    await leased.record(Transition.of_checkout(status=CheckoutStatus.failed))
    checkout, steps = snapshot(store.orm, checkout_id)
    assert checkout is not None
    assert (checkout["status"], checkout["past_pivot"], checkout["lease_owner"]) == (
        "failed",
        False,
        None,
    )
    assert (steps[0]["status"], steps[0]["finished_at"], steps[0]["compensated_at"]) == (
        "compensated",
        AT,
        AT,
    )
    assert steps[2]["status"] == "pending"
    assert not await journal.request_cancel(checkout_id)  # terminal


@bounded
async def test_a_checkout_past_its_pivot_cannot_be_cancelled(store: Store) -> None:
    """Once the commit that passes the pivot is in, a cancel request is refused and not flagged."""
    journal = store.journal()
    checkout_id = (await journal.create(a_checkout(), STEPS))[0].id
    pivot = Transition({"past_pivot": True}, {"email": {"status": StepStatus.running}})
    await journal.commit(checkout_id, 1, pivot, unless_cancelled=True)
    assert not await journal.request_cancel(checkout_id)
    assert not await journal.request_cancel(uuid.uuid4())  # no such checkout
    checkout = orm_checkout(store.orm, checkout_id)
    assert checkout is not None
    assert (checkout["past_pivot"], checkout["cancel_requested"]) == (True, False)


# --- idempotency -----------------------------------------------------------------------------


@bounded
async def test_a_taken_key_or_id_is_a_duplicate_leaving_one_row(store: Store) -> None:
    """Creating a second checkout with a taken idempotency key is a duplicate key (the API's
    replay); a taken id is refused too but is no key duplicate; either leaves one row."""
    journal = store.journal()
    key = "k" * 64
    first = (await journal.create(a_checkout(key=key), STEPS))[0]

    second = a_checkout(key=key)
    with pytest.raises(IntegrityError) as taken_key:
        await journal.create(second, STEPS)
    assert is_duplicate_key(taken_key.value)
    assert snapshot(store.orm, second.id) == (None, [])

    same_id = a_checkout(key="m" * 64)
    same_id.id = first.id
    with pytest.raises(IntegrityError) as taken_id:
        await journal.create(same_id, STEPS)
    assert not is_duplicate_key(taken_id.value)

    assert count_checkouts(store.orm) == 1
    assert count_checkouts(store.orm, idempotency_key_hash=key) == 1
    checkout, steps = snapshot(store.orm, first.id)
    assert checkout is not None
    assert checkout["idempotency_key_hash"] == key
    assert [step["name"] for step in steps] == STEPS

    # Without a key, checkouts never collide.
    for _ in range(2):
        await journal.create(a_checkout(), STEPS)
    assert count_checkouts(store.orm) == 3
    assert count_checkouts(store.orm, idempotency_key_hash=None) == 2  # IS NULL

    found = await journal.find_by_key(key)
    assert found is not None
    assert found.id == first.id
    assert await journal.find_by_key("n" * 64) is None
    await journal.save_first_response(first.id, 201, '{"first": true}')
    await journal.save_first_response(first.id, 202, '{"second": true}')
    found = await journal.find_by_key(key)
    assert found is not None
    assert (found.response_status, found.response_body) == (201, '{"first": true}')


# --- leases ----------------------------------------------------------------------------------


@bounded
@pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_claim_skips_a_checkout_another_session_holds_locked(store: Store) -> None:
    """A due checkout whose row a cut-off replica's unfinished transaction still holds is not
    waited for: the claim answers None at once, the other due checkouts are claimed, and it is
    claimed once the lock is let go."""
    journal, other = store.journal("replica-a"), store.journal("replica-b")
    held, free = [(await journal.create(a_checkout(), STEPS))[0].id for _ in range(2)]
    for checkout_id in (held, free):
        await journal.let_go(checkout_id, 1)
    with psycopg.connect(postgres_conninfo(store.database.url)) as stuck:
        stuck.execute("SELECT 1 FROM checkout WHERE id = %s FOR UPDATE", (held,))
        with anyio.fail_after(2):
            assert await other.claim(held) is None
            assert await other.claim(free) == 2
        stuck.rollback()
    assert await other.claim(held) == 2


async def test_claims_parking_and_retries_decide_what_is_due(store: Store) -> None:
    """A checkout is due (and claimable, with a new token) only when unfinished, unleased or
    its lease expired, and not parked; an operator's retry makes a parked one due again."""
    journal, other = store.journal("replica-a"), store.journal("replica-b")
    checkout_id = (await journal.create(a_checkout(), STEPS))[0].id
    assert await journal.due_unfinished(10) == []
    await journal.let_go(checkout_id, 1)
    assert await journal.due_unfinished(10) == [checkout_id]
    assert await other.claim(checkout_id) == 2
    assert await journal.due_unfinished(10) == []
    assert await journal.claim(checkout_id) is None

    until = time.time() + 60
    loaded = await other.load(checkout_id)
    assert loaded is not None
    await LeasedCheckout(other, loaded, 2).park(until=until)
    parked = orm_checkout(store.orm, checkout_id)
    assert parked is not None
    assert (parked["next_attempt_at"], parked["lease_owner"], parked["lease_expires_at"]) == (
        until,
        None,
        None,
    )
    assert await journal.due_unfinished(10) == []
    assert await journal.claim(checkout_id) is None

    assert await journal.request_retry(checkout_id, deadline_s=120)
    retried = orm_checkout(store.orm, checkout_id)
    assert retried is not None
    assert retried["next_attempt_at"] is None
    assert retried["deadline_at"] > time.time() + 100
    assert await journal.due_unfinished(10) == [checkout_id]
    assert await journal.claim(checkout_id) == 3

    await journal.commit(checkout_id, 3, Transition.of_checkout(status=CheckoutStatus.completed))
    assert await journal.due_unfinished(10) == []
    assert await journal.claim(checkout_id) is None
    assert not await journal.request_retry(checkout_id, deadline_s=120)
    done = orm_checkout(store.orm, checkout_id)
    assert done is not None
    assert (done["status"], done["lease_token"], done["lease_owner"]) == ("completed", 3, None)


# --- lists -----------------------------------------------------------------------------------


@bounded
async def test_pages_and_status_counts_return_what_was_written(store: Store) -> None:
    """Keyset pages list every checkout once, newest first (ties by id), with its steps, filtered
    by status and customer; the counts cover every status."""
    journal = store.journal()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    # Two checkouts share a creation time, split by the first page's end: the id orders them.
    times = [base, base + timedelta(seconds=1), base + timedelta(2), base + timedelta(2)]
    times.append(base + timedelta(days=3, microseconds=1))
    created: list[CheckoutRecord] = []
    for index, created_at in enumerate(times):
        customer = "c-7" if index % 2 else "c-42"
        created.append(
            (await journal.create(a_checkout(customer_id=customer, created_at=created_at), STEPS))[
                0
            ]
        )
    ends = {0: CheckoutStatus.completed, 1: CheckoutStatus.failed, 2: CheckoutStatus.completed}
    for index, status in ends.items():
        done = Transition.of_step("warehouse", status=StepStatus.succeeded, attempts=1)
        await journal.commit(created[index].id, 1, done.then(Transition.of_checkout(status=status)))
    await journal.commit(created[3].id, 1, Transition.of_checkout(status=CheckoutStatus.running))
    newest_first = [c.id for c in sorted(created, key=lambda c: (c.created_at, c.id), reverse=True)]

    seen: list[uuid.UUID] = []
    mores: list[bool] = []
    after: tuple[datetime, uuid.UUID] | None = None
    for _ in range(len(created)):
        listed, more = await checkouts.page(
            store.database, status=None, customer_id=None, after=after, limit=2
        )
        seen += [checkout.id for checkout, _ in listed]
        mores.append(more)
        for checkout, steps in listed:
            assert checkout.created_at.tzinfo is UTC
            assert step_dicts(steps, ids=True) == orm_steps(store.orm, checkout.id)
            assert asdict(checkout) == orm_checkout(store.orm, checkout.id)
        if not more:
            break
        after = (listed[-1][0].created_at, listed[-1][0].id)
    assert seen == newest_first
    assert {seen[1], seen[2]} == {created[2].id, created[3].id}  # the tie spans two pages
    assert mores == [True, True, False]

    completed, more = await checkouts.page(
        store.database, status="completed", customer_id=None, after=None, limit=10
    )
    assert [c.id for c, _ in completed] == [created[2].id, created[0].id]
    assert not more
    assert [s.status for s in sorted(completed[0][1], key=lambda s: s.position)] == [
        "succeeded",
        "pending",
        "pending",
    ]
    of_c7, _ = await checkouts.page(
        store.database, status=None, customer_id="c-7", after=None, limit=10
    )
    assert [c.id for c, _ in of_c7] == [created[3].id, created[1].id]
    failed_c42, _ = await checkouts.page(
        store.database, status="failed", customer_id="c-42", after=None, limit=10
    )
    assert failed_c42 == []

    assert await checkouts.status_counts(store.database) == {
        "pending": 1,
        "running": 1,
        "completed": 2,
        "failed": 1,
    }
