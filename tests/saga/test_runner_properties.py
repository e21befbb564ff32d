"""Property: whatever faults, crashes and replays hit a checkout, the saga's invariants hold.

Hypothesis draws the step order, membership, a plan of faults per (service, action) and crash
points of the runner; the checkout is driven over in-memory services, handed to a new replica
after each crash, then driven again once terminal. See ``harness.assert_saga_invariants``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.saga.fakes import SERVICES, CrashAt, Fault, FakeServices, FaultPlan
from tests.saga.harness import assert_saga_invariants, journal_engine, start

CRASH_POINTS = [
    f"{service}:{point}"
    for service in SERVICES
    for point in ("before_call", "after_call", "before_compensate", "after_compensate")
]
FORWARD = (Fault.TRANSIENT, Fault.LOST, Fault.CRASH_BEFORE, Fault.CRASH_AFTER)


def faults(*kinds: Fault) -> st.SearchStrategy[list[Fault]]:
    """Up to four faults for the first calls of one (service, action); later calls succeed."""
    return st.lists(st.sampled_from([Fault.OK, *kinds]), max_size=4)


fault_plans = st.fixed_dictionaries(
    {
        ("warehouse", "execute"): faults(*FORWARD, Fault.REFUSE),
        ("rewards", "execute"): faults(*FORWARD, Fault.REFUSE),
        ("email", "execute"): faults(*FORWARD),
        **{
            (service, "settle"): faults(Fault.TRANSIENT, Fault.CRASH_BEFORE) for service in SERVICES
        },
        **{(service, "compensate"): faults(*FORWARD) for service in SERVICES},
    }
)


async def run_one(
    path: Path,
    order: list[str],
    member: bool,
    plan: dict[tuple[str, str], list[Fault]],
    points: set[str],
) -> None:
    async with journal_engine(path) as engine:
        services = FakeServices(FaultPlan(plan))
        run = await start(
            engine, services, member=member, order=order, crash_points=CrashAt(points)
        )
        await run.drive_to_the_end()
        await assert_saga_invariants(run, member=member)
        await run.replay()
        checkout, _ = await run.load()
        event(f"status: {checkout.status}")
        event(
            f"replicas that died: {min(len(run.crashes), 3)}{'+' if len(run.crashes) > 2 else ''}"
        )


@settings(max_examples=150, deadline=None)
@given(
    order=st.permutations(SERVICES),
    member=st.booleans(),
    plan=fault_plans,
    points=st.sets(st.sampled_from(CRASH_POINTS), max_size=2),
)
def test_saga_invariants_hold_under_faults_crashes_and_replays(
    order: list[str], member: bool, plan: dict[tuple[str, str], list[Fault]], points: set[str]
) -> None:
    """Any faults, crashes and replays leave the checkout completed or failed with every invariant."""
    with tempfile.TemporaryDirectory() as directory:
        anyio.run(run_one, Path(directory) / "orchestrator.db", order, member, plan, points)
