"""Properties: whatever faults, crashes, parks, cancels and replays hit a checkout, the saga holds.

Hypothesis draws the plan (every valid CHECKOUT_STEPS: the six orders in sequence and the
concurrent groups), membership, a plan of faults per (service, action), crash
points of the runner, when the deadline passes and when an operator cancels; the checkout is
driven over in-memory services, handed to a new replica after each crash or park, then driven
again once terminal. See ``harness.assert_saga_invariants`` for what is checked.

The first property covers every path; the second forces a failure (a step refused, or out of
attempts past the deadline) so that compensations, and crashes in the middle of them, are
exercised in every example rather than in a few.
"""

from __future__ import annotations

import functools
import itertools
import tempfile
from pathlib import Path
from typing import Any

import anyio
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from orchestrator.saga.plan import PlanError, parse_plan
from tests.saga.fakes import SERVICES, CrashAt, FakeServices, Fault, FaultPlan
from tests.saga.harness import assert_saga_invariants, journal_database, start

PHASES = ("before_call", "after_call", "before_compensate", "after_compensate")
CRASH_POINTS = [f"{service}:{phase}" for service in SERVICES for phase in PHASES]
CRASHES = (Fault.CRASH_BEFORE, Fault.CRASH_AFTER)
TRANSIENT = st.sampled_from([Fault.TRANSIENT, Fault.LOST, Fault.LATE])


def valid_plans() -> list[str]:
    """Every plan of the three steps that keeps the rules, groups included."""
    plans = []
    for order in itertools.permutations(SERVICES):
        for cuts in itertools.product((",", "+"), repeat=len(order) - 1):
            text = order[0] + "".join(cut + name for cut, name in zip(cuts, order[1:], strict=True))
            try:
                parse_plan(text)
            except PlanError:
                continue
            plans.append(text)
    return plans


PLANS = valid_plans()
CONCURRENT = [plan for plan in PLANS if "+" in plan]


def faults(*others: Fault) -> st.SearchStrategy[list[Fault]]:
    """Faults for the first calls of one (service, action), in runs of 1-3; later calls succeed.

    Half the runs are transient failures (answer lost, request never sent, or request still on
    its way, arriving after the checkout ended), so that a step exhausting its
    attempts (three in a row) is common, not a rare coincidence. No ``Fault.OK``: a call that
    succeeds usually ends the step, so faults drawn after it would go unused.
    """
    runs = st.lists(st.tuples(TRANSIENT | st.sampled_from(others), st.integers(1, 3)), max_size=3)
    return runs.map(lambda drawn: [fault for fault, times in drawn for _ in range(times)])


def fault_plans(**overrides: st.SearchStrategy[list[Fault]]) -> st.SearchStrategy[Any]:
    """A fault plan for every (service, action); ``warehouse_execute=...`` replaces one."""
    plans = {
        ("warehouse", "execute"): faults(*CRASHES, Fault.CANCEL, Fault.REFUSE),
        ("rewards", "execute"): faults(*CRASHES, Fault.CANCEL, Fault.REFUSE),
        ("email", "execute"): faults(*CRASHES, Fault.CANCEL),
        ("email", "read"): faults(Fault.CRASH_BEFORE),
        **{(service, "compensate"): faults(*CRASHES) for service in SERVICES},
    }
    for name, strategy in overrides.items():
        plans[tuple(name.split("_"))] = strategy  # type: ignore[index]
    return st.fixed_dictionaries(plans)


async def run_one(path: Path, order: str, member: bool, plan: FaultPlan, **when: Any) -> None:
    async with journal_database(path) as database:
        run = await start(database, FakeServices(plan), member=member, order=order, **when)
        await run.drive_to_the_end()
        await assert_saga_invariants(run)
        await run.replay()
        checkout, _ = await run.load()
        event(f"status: {checkout.status}")
        event(
            f"replicas that died: {min(len(run.crashes), 3)}{'+' if len(run.crashes) > 2 else ''}"
        )
        event(f"parks: {min(run.parks, 2)}{'+' if run.parks > 1 else ''}")
        event(f"cancel accepted: {any(run.cancels)}")
        event(f"calls at once: {run.services.most_at_once}")


def run_example(order: str, member: bool, plan: Any, points: set[str], **when: Any) -> None:
    """One example on a fresh SQLite file, in its own event loop."""
    # Spelled out because this Hypothesis (6.170) prints the failing case's arguments blank.
    faults = {f"{s}:{a}": [str(f) for f in queue] for (s, a), queue in plan.items() if queue}
    note(f"order={order} member={member} crash_points={sorted(points)} {when}")
    note(f"faults={faults}")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "orchestrator.db"
        run = functools.partial(
            run_one, path, order, member, FaultPlan(plan), crash_points=CrashAt(points), **when
        )
        anyio.run(run)


def test_the_plans_drawn_include_concurrent_groups() -> None:
    """The six orders in sequence and the groups: what the properties below draw from."""
    assert len(PLANS) - len(CONCURRENT) == 6
    assert {"warehouse,rewards+email", "rewards+warehouse,email", "warehouse,email+rewards"} <= set(
        CONCURRENT
    )


@settings(max_examples=200, deadline=None)
@given(
    order=st.sampled_from(PLANS),
    member=st.booleans(),
    plan=fault_plans(),
    points=st.sets(st.sampled_from(CRASH_POINTS), max_size=2),
    deadline_after_parks=st.sampled_from([None, 0, 1]),
    cancel_at=st.none() | st.integers(0, 3),
)
def test_saga_invariants_hold_under_faults_crashes_and_replays(
    order: str,
    member: bool,
    plan: dict[tuple[str, str], list[Fault]],
    points: set[str],
    deadline_after_parks: int | None,
    cancel_at: int | None,
) -> None:
    """Any faults, crashes, parks, cancels and replays end completed or failed with every invariant."""
    run_example(
        order,
        member,
        plan,
        points,
        deadline_after_parks=deadline_after_parks,
        cancel_at=cancel_at,
    )


# The failing step's calls: out of attempts (3 transient failures, any of them maybe applied),
# or refused; possibly after crashes, so that a new replica is the one that gives up.
failing_calls = st.tuples(
    st.lists(st.sampled_from(CRASHES), max_size=2),
    st.lists(TRANSIENT, min_size=3, max_size=3) | st.just([Fault.REFUSE]),
).map(lambda parts: parts[0] + parts[1])
compensation_faults = st.lists(TRANSIENT | st.sampled_from(CRASHES), min_size=1, max_size=4)
compensate_points = [f"{service}:{phase}" for service in SERVICES for phase in PHASES[2:]]


@st.composite
def plans_and_failing_step(draw: st.DrawFn) -> tuple[str, str]:
    """A plan, and a step of it that can fail the checkout (neither retriable nor the email)."""
    text = draw(st.sampled_from(PLANS))
    plan = parse_plan(text)
    can_fail = [name for name in ("warehouse", "rewards") if not plan.runs_to_completion(name)]
    return text, draw(st.sampled_from(can_fail))


@settings(max_examples=80, deadline=None)
@given(
    order_and_failing=plans_and_failing_step(),
    member=st.booleans(),
    failing_plan=failing_calls,
    plan=fault_plans(
        warehouse_compensate=compensation_faults,
        rewards_compensate=compensation_faults,
        email_compensate=compensation_faults,
    ),
    points=st.sets(st.sampled_from(compensate_points), max_size=2),
)
def test_compensation_undoes_every_effect_despite_faults_and_crashes(
    order_and_failing: tuple[str, str],
    member: bool,
    failing_plan: list[Fault],
    plan: dict[tuple[str, str], list[Fault]],
    points: set[str],
) -> None:
    """A checkout that fails past its deadline or on a refusal ends with every effect undone."""
    order, failing = order_and_failing
    plan = plan | {(failing, "execute"): failing_plan}
    member = member or failing == "rewards"
    run_example(order, member, plan, points, deadline_after_parks=0)


@settings(max_examples=80, deadline=None)
@given(
    order=st.sampled_from(CONCURRENT),
    member=st.booleans(),
    plan=fault_plans(),
    points=st.sets(st.sampled_from(CRASH_POINTS), max_size=3),
    cancel_at=st.none() | st.integers(0, 2),
)
def test_concurrent_groups_hold_under_faults_crashes_and_replays(
    order: str,
    member: bool,
    plan: dict[tuple[str, str], list[Fault]],
    points: set[str],
    cancel_at: int | None,
) -> None:
    """Only concurrent plans, with up to three crash points: each effect once, nothing left behind."""
    run_example(order, member, plan, points, cancel_at=cancel_at)
