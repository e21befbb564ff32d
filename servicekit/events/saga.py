"""The checkout's choreography: which event each step reacts to, and what it answers.

The orchestrator publishes ``checkout.placed`` with the order and its *plan* (the step names in
``CHECKOUT_STEPS`` order). From there nobody conducts: each service finds its own position in
the plan and

- acts when its turn comes: on ``checkout.placed`` if it is first, else on the previous step's
  ``step.succeeded`` or ``step.skipped``; it answers ``step.succeeded``, ``step.skipped`` (not
  needed for this order) or ``step.refused`` (a refusal for good: out of stock, unknown sku);
- undoes its effect when the step after it failed for good: on that step's ``step.refused`` or
  ``step.compensated``; it answers ``step.compensated``. So compensation travels back through
  the plan in reverse order, as the orchestrator's saga compensates.

The checkout is completed when the last step succeeded or was skipped, and failed when the
first step was refused or compensated: the orchestrator's journal reads that from the same
events (``orchestrator.choreography``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from servicekit.events.envelope import Event, current_traceparent
from servicekit.events.reactor import Reaction, Work
from servicekit.problems import ProblemError

PLACED = "checkout.placed"
SUCCEEDED = "step.succeeded"
SKIPPED = "step.skipped"
REFUSED = "step.refused"
COMPENSATED = "step.compensated"
EVENT_TYPES = (PLACED, SUCCEEDED, SKIPPED, REFUSED, COMPENSATED)

Act = Callable[[Event], Awaitable[Work | None]]


def plan_of(event: Event) -> list[str]:
    plan: list[str] = event.data["plan"]
    return plan


def order_of(event: Event) -> dict[str, Any]:
    """The checkout as placed: customer, items, currency, total, points."""
    order: dict[str, Any] = event.data["order"]
    return order


def answer(cause: Event, type: str, step: str, **data: Any) -> Event:
    """What ``step`` publishes in reaction to ``cause``: the plan and order carried along."""
    return Event(
        type=type,
        checkout_id=cause.checkout_id,
        source=step,
        data={"plan": plan_of(cause), "order": order_of(cause), "step": step, **data},
        causation_id=cause.message_id,
        # The span applying ``cause``, when tracing is on; else the trace ``cause`` belongs to.
        traceparent=current_traceparent() or cause.traceparent,
    )


def refusal(problem: ProblemError) -> dict[str, Any]:
    """A refusal for good, as the journal records a refused step's error."""
    return {
        "kind": "StepRefusedError",
        "retryable": False,
        "detail": problem.detail,
        "http_status": problem.status,
        "problem_type": problem.type,
    }


def step_reactions(step: str, *, act: Act, compensate: Act) -> dict[str, Reaction]:
    """The reactions of the service doing ``step``: ``act`` on its turn, ``compensate`` when the
    step after it failed for good. Each returns the work of its transaction (see ``reactor``)."""

    def position(event: Event) -> int:
        plan = plan_of(event)
        return plan.index(step) if step in plan else -1

    async def on_turn(event: Event) -> Work | None:
        mine = position(event)
        if mine < 0:
            return None
        if event.type == PLACED:
            return await act(event) if mine == 0 else None
        plan = plan_of(event)
        return await act(event) if mine > 0 and event.data["step"] == plan[mine - 1] else None

    async def on_failure(event: Event) -> Work | None:
        mine, plan = position(event), plan_of(event)
        if mine < 0 or mine + 1 >= len(plan) or event.data["step"] != plan[mine + 1]:
            return None
        return await compensate(event)

    return {
        PLACED: on_turn,
        SUCCEEDED: on_turn,
        SKIPPED: on_turn,
        REFUSED: on_failure,
        COMPENSATED: on_failure,
    }
