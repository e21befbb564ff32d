"""The checkout's plan: which steps run in sequence, which run at once, and what kind each is.

``CHECKOUT_STEPS`` writes it: ``,`` separates groups that run one after the other, ``+`` joins
the steps of a group, which run concurrently. ``warehouse,rewards,email`` (the default) runs the
three in turn; ``warehouse,rewards+email`` reserves first, then credits and emails at once.

The kinds follow from the plan, by the rule of the saga literature (Garcia-Molina and Salem's
pivot): steps before the pivot are *compensatable* and run in order; the *pivot* is the
go/no-go step, the last that may still fail the checkout; steps after it are *retriable*, run
concurrently if they like, and are retried until they succeed, never compensated. Here:

- the pivot is the last group that holds a single step (in sequence: the last step);
- a group after the pivot may hold only steps that cannot be refused for good: the warehouse
  can (out of stock, unknown sku), so it comes at the pivot or before it;
- every step is named exactly once.

A plan that breaks a rule is refused when the orchestrator starts, naming the rule. Each step's
nature is declared here, beside the rules that read it, so the API and the dashboard can show
any recorded checkout's kinds without the steps' clients.
"""

from __future__ import annotations

import enum
import functools
from collections import Counter
from dataclasses import dataclass


class StepKind(enum.StrEnum):
    """What a step is, by its place in the plan."""

    COMPENSATABLE = "compensatable"
    PIVOT = "pivot"
    RETRIABLE = "retriable"


@dataclass(frozen=True)
class Nature:
    """What a step can be, whatever its place: the facts the kinds are derived from."""

    # It may answer "no" for good (the warehouse: out of stock), so it cannot come after the pivot.
    refusable: bool = False
    # Its effect cannot be taken back (a confirmation email is sent): once started, it is retried
    # until it succeeds, and the checkout can no longer be cancelled. Before a step that may still
    # fail, its compensation is a second message (``order_cancelled``), not an undo.
    irrevocable: bool = False


NATURES: dict[str, Nature] = {
    "warehouse": Nature(refusable=True),
    "rewards": Nature(),
    "email": Nature(irrevocable=True),
}
STEP_NAMES: tuple[str, ...] = tuple(NATURES)
DEFAULT_PLAN = "warehouse,rewards,email"


class PlanError(ValueError):
    """A ``CHECKOUT_STEPS`` that breaks a rule; the message names the rule."""


@dataclass(frozen=True)
class Plan:
    """Groups of steps, in sequence; the steps of one group run concurrently."""

    groups: tuple[tuple[str, ...], ...]

    @property
    def order(self) -> list[str]:
        """Every step, group by group (the steps' ``position``)."""
        return [name for group in self.groups for name in group]

    @property
    def pivot(self) -> str:
        """The go/no-go step: the last group of one step."""
        return next(group[0] for group in reversed(self.groups) if len(group) == 1)

    @property
    def concurrent(self) -> bool:
        """Whether any group runs several steps at once."""
        return any(len(group) > 1 for group in self.groups)

    @functools.cached_property
    def kinds(self) -> dict[str, StepKind]:
        """Every step's kind, from where it stands relative to the pivot."""
        order, pivot = self.order, self.pivot
        at = order.index(pivot)
        return {
            name: StepKind.PIVOT
            if name == pivot
            else (StepKind.COMPENSATABLE if index < at else StepKind.RETRIABLE)
            for index, name in enumerate(order)
        }

    def kind(self, name: str) -> StepKind:
        """The step's kind."""
        return self.kinds[name]

    def runs_to_completion(self, name: str) -> bool:
        """Whether the step, once started, is retried until it succeeds (no cancel after it starts)."""
        return self.kind(name) is StepKind.RETRIABLE or NATURES[name].irrevocable

    def __str__(self) -> str:
        return ",".join("+".join(group) for group in self.groups)


@functools.lru_cache(maxsize=64)
def parse_plan(text: str) -> Plan:
    """The plan ``text`` writes (spaces ignored); ``PlanError`` naming the rule it breaks."""
    groups = tuple(
        tuple(name.strip() for name in group.split("+"))
        for group in text.replace(" ", "").split(",")
    )
    names = [name for group in groups for name in group]
    if any(name == "" for name in names):
        raise PlanError(
            f"CHECKOUT_STEPS {text!r} has an empty step: steps are joined by '+' (run at once) "
            "and groups separated by ',' (run in turn), e.g. warehouse,rewards+email"
        )
    unknown = sorted(set(names) - set(STEP_NAMES))
    twice = sorted(name for name, count in Counter(names).items() if count > 1)
    missing = [name for name in STEP_NAMES if name not in names]
    if unknown or twice or missing:
        problems = [
            *([f"unknown {', '.join(unknown)}"] if unknown else []),
            *([f"named twice: {', '.join(twice)}"] if twice else []),
            *([f"missing {', '.join(missing)}"] if missing else []),
        ]
        raise PlanError(
            f"CHECKOUT_STEPS must name each of {', '.join(STEP_NAMES)} exactly once; "
            f"{text!r}: {'; '.join(problems)}"
        )
    if all(len(group) > 1 for group in groups):
        raise PlanError(
            f"CHECKOUT_STEPS {text!r} has no pivot: the go/no-go step runs in a group of its own "
            "(the last such group is the pivot), e.g. warehouse,rewards+email"
        )
    plan = Plan(groups)
    after = plan.order[plan.order.index(plan.pivot) + 1 :]
    refusable = [name for name in after if NATURES[name].refusable]
    if refusable:
        raise PlanError(
            f"CHECKOUT_STEPS {text!r} puts {', '.join(refusable)} after the pivot ({plan.pivot}): "
            "steps after the pivot are retried until they succeed and never compensated, and "
            f"{', '.join(refusable)} may be refused for good (out of stock); run it at the pivot "
            "or before it"
        )
    return plan
