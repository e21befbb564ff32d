"""The forward pass of the saga: the plan's groups in turn, the steps of a group at once.

Every attempt of a step is committed as started (``running``, attempt counted) before its call;
its success is committed at once while other steps of its group still run, else kept for the
next write (the next group's start, or the checkout's end), which comes before any further call.
The steps of a group of several start in one transaction.

Per step, by its kind (``saga.plan``): a compensatable step (or the pivot) that keeps failing
transiently is retried under the step policy, then the checkout is *parked* (lease given up,
resumed ``RESUME_DELAY_S`` later by any replica, at the group's unfinished steps) until its
deadline; past it, the checkout fails. Steps that run to completion (retriable ones, after the
pivot, and the email wherever it stands) are retried until they succeed; a retriable step
refused for good is kept on its step and tried again when the checkout resumes. A refusal of
any other step, a deadline passed or an operator's cancel records the checkout's ``error``
first (so a restart resumes compensating, never going forward again); the other steps of the
group stop retrying and settle before compensation starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.clients import StepError, StepTransientError
from orchestrator.journal.journal import CancelRequestedError
from orchestrator.journal.lease import LeasedCheckout
from orchestrator.journal.records import StepRecord, Transition, utcnow
from orchestrator.saga.calls import StepCalls
from orchestrator.saga.concurrently import settle_all
from orchestrator.saga.plan import Plan, StepKind
from orchestrator.saga.retry import RetryPolicy
from orchestrator.saga.steps import SagaContext, SagaStep
from orchestrator.saga.telemetry import SagaTelemetry
from orchestrator.statuses import StepStatus

FORWARD_DONE, FORWARD_FAILED, FORWARD_PARKED = "done", "failed", "parked"
DONE_STEP_STATUSES = (StepStatus.succeeded, StepStatus.skipped)
CANCELLED = {"kind": "cancelled", "detail": "Cancelled by an operator."}
# Why a checkout must wait before a step is tried again: the step, its attempts, the detail.
_Wait = tuple[str, int, str]


@dataclass
class _Group:
    """One forward pass over a group of steps, shared by its steps running at once."""

    unsettled: int  # steps of the group still running
    failing: bool = False  # the checkout's error is recorded: the others stop retrying


class _SiblingFailed(Exception):
    """Another step of the group failed the checkout; this one makes no further attempt."""


class Forward:
    """Takes a checkout's steps forward, group by group."""

    def __init__(
        self,
        steps: dict[str, SagaStep],
        policy: RetryPolicy,
        calls: StepCalls,
        telemetry: SagaTelemetry,
        resume_delay_s: float,
    ) -> None:
        self.steps = steps
        self.policy = policy
        self.calls = calls
        self.telemetry = telemetry
        self.resume_delay_s = resume_delay_s

    def first_start(self, ctx: SagaContext, plan: Plan, steps: dict[str, StepRecord]) -> Transition:
        """The start of a new checkout's first group (its steps ``running``, first attempt
        counted; those not needed ``skipped``), for the checkout's insert to commit: the
        drive then goes on with ``first_started``."""
        return self._start_of(ctx, plan, plan.groups[0], steps)[0]

    async def run(
        self,
        journal: LeasedCheckout,
        ctx: SagaContext,
        plan: Plan,
        deadline_at: float | None,
        *,
        first_started: bool = False,
    ) -> str:
        """Run the groups not yet done, in turn: done, failed (its error recorded) or parked.

        ``first_started``: the first group's start (``first_start``) is committed already, and
        its attempts not yet made.
        """
        for index, group in enumerate(plan.groups):
            rows = journal.steps
            todo = [name for name in group if rows[name].status not in DONE_STEP_STATUSES]
            if not todo:
                continue
            forward = _Group(unsettled=len(todo))
            # A checkout placed here had its first group started by its insert (``first_start``).
            recorded = first_started and index == 0
            started = recorded or len(todo) > 1
            if started and not recorded:
                try:
                    todo = await self._start_together(journal, ctx, plan, todo, forward)
                except CancelRequestedError:
                    await self._fail(
                        journal,
                        forward,
                        None,
                        CANCELLED,
                    )
                    return FORWARD_FAILED
            outcomes = await settle_all(
                [
                    self._forward_step(journal, ctx, plan, name, forward, deadline_at, started)
                    for name in todo
                ]
            )
            if forward.failing:
                return FORWARD_FAILED
            waits = [outcome for outcome in outcomes if outcome is not None]
            if waits:
                # Every step of the group has settled; the group resumes, at its unfinished steps,
                # RESUME_DELAY_S later on whichever replica claims the checkout.
                until = time.time() + self.resume_delay_s
                await journal.park(until=until)
                for name, attempts, detail in waits:
                    self.telemetry.checkout_parked(
                        journal.checkout_id, step=name, attempt=attempts, detail=detail, until=until
                    )
                return FORWARD_PARKED
        return FORWARD_DONE

    async def _start_together(
        self, journal: LeasedCheckout, ctx: SagaContext, plan: Plan, todo: list[str], group: _Group
    ) -> list[str]:
        """Start the steps of a group in one transaction (those not needed: ``skipped``).

        Returns the steps started, whose first attempt is thus recorded before their tasks run.
        """
        transition, started = self._start_of(ctx, plan, todo, journal.steps)
        group.unsettled = len(started)
        await journal.record(transition, unless_cancelled=True)
        return started

    def _start_of(
        self, ctx: SagaContext, plan: Plan, todo: Sequence[str], rows: dict[str, StepRecord]
    ) -> tuple[Transition, list[str]]:
        """The start of ``todo``'s steps together (those not needed: ``skipped``), and which
        steps it starts."""
        transition, started = Transition(), []
        for name in todo:
            if not self.steps[name].applies(ctx):
                transition = transition.then(
                    Transition.of_step(name, status=StepStatus.skipped, finished_at=utcnow())
                )
                continue
            started.append(name)
            transition = transition.then(self._attempt_started(plan, name, rows[name]))
        return transition, started

    @staticmethod
    def _attempt_started(plan: Plan, name: str, row: StepRecord) -> Transition:
        """A step's next attempt, recorded before its call."""
        values: dict[str, Any] = {"status": StepStatus.running, "attempts": row.attempts + 1}
        if row.started_at is None:
            values["started_at"] = utcnow()
        # Starting a step that must run to completion passes the point of no return: from then on
        # the checkout can no longer be cancelled. Checked against a pending cancel atomically.
        past_pivot = {"past_pivot": True} if plan.runs_to_completion(name) else {}
        return Transition(past_pivot, {name: values})

    async def _forward_step(
        self,
        journal: LeasedCheckout,
        ctx: SagaContext,
        plan: Plan,
        name: str,
        group: _Group,
        deadline_at: float | None,
        started: bool,
    ) -> _Wait | None:
        """Take one step forward; None once it succeeded, was skipped or failed the checkout,
        else why the checkout must wait (step, attempts, detail) before it is tried again.

        ``started``: its first attempt is recorded already (``_start_together``).
        """
        row, step = journal.steps[name], self.steps[name]
        if not started and not step.applies(ctx):
            await self._settled(
                journal,
                group,
                Transition.of_step(name, status=StepStatus.skipped, finished_at=utcnow()),
            )
            return None
        to_completion = plan.runs_to_completion(name)
        try:
            await self._attempt(
                journal,
                step,
                ctx,
                plan,
                row,
                self.policy.forever() if to_completion else self.policy,
                group,
                recorded=started,
            )
            return None
        except _SiblingFailed:
            return None
        except CancelRequestedError:
            await self._fail(journal, group, None, CANCELLED)
            return None
        except StepTransientError as exc:
            if deadline_at is None or time.time() < deadline_at:
                group.unsettled -= 1
                return name, row.attempts, exc.detail
            await self._fail(
                journal, group, row, {"step": name, "deadline_passed": True, **exc.as_json()}, exc
            )
            return None
        except StepError as exc:
            if plan.kind(name) is StepKind.RETRIABLE:
                # Past the pivot nothing is undone: a refusal is kept on the step for an operator,
                # and the step is tried again when the checkout resumes (or at /retry).
                group.unsettled -= 1
                await journal.record(
                    Transition.of_step(
                        name, error=json.dumps(exc.as_json()), http_status=exc.http_status
                    )
                )
                return name, row.attempts, exc.detail
            await self._fail(journal, group, row, {"step": name, **exc.as_json()}, exc)
            return None

    async def _settled(
        self, journal: LeasedCheckout, group: _Group, transition: Transition
    ) -> None:
        """Record a step's end: at once while others of its group still run (so readers see it
        done), else kept for the next write, which comes before any further call."""
        group.unsettled -= 1
        if group.unsettled > 0:
            await journal.record(transition)
        else:
            journal.later(transition)

    async def _fail(
        self,
        journal: LeasedCheckout,
        group: _Group,
        row: StepRecord | None,
        failure: dict[str, Any],
        exc: StepError | None = None,
    ) -> None:
        """Record why the checkout fails (and the failing step's state) in one transition.

        Only the group's first failure becomes the checkout's error; its other steps stop
        retrying, and a later refusal among them is recorded on its step alone.
        """
        group.unsettled -= 1
        transition = (
            Transition() if group.failing else Transition.of_checkout(error=json.dumps(failure))
        )
        if row is not None and exc is not None:
            transition = transition.then(
                Transition.of_step(
                    row.name,
                    status=StepStatus.failed,
                    error=json.dumps(exc.as_json()),
                    http_status=exc.http_status,
                    finished_at=utcnow(),
                )
            )
        first = not group.failing
        group.failing = True
        if transition:
            await journal.record(transition)
        if first:
            self.telemetry.checkout_failing(
                journal.checkout_id, failure, row.attempts if row else None
            )

    async def _attempt(
        self,
        journal: LeasedCheckout,
        step: SagaStep,
        ctx: SagaContext,
        plan: Plan,
        row: StepRecord,
        policy: RetryPolicy,
        group: _Group,
        *,
        recorded: bool,
    ) -> None:
        """Call the step forward under ``policy``, journaling every attempt before and after it.

        ``recorded``: the first attempt's start is committed already.
        """
        to_completion = plan.runs_to_completion(step.name)
        async for attempt in policy.attempts():
            with attempt:
                if group.failing and (row.attempts == 0 or not to_completion):
                    # Another step of the group failed the checkout: no further attempt. Except
                    # for a step that runs to completion once started (the email): an attempt of
                    # it may still land (a request on its way), and only its success lets its
                    # compensation (a cancellation) follow the confirmation, never precede it.
                    group.unsettled -= 1
                    raise _SiblingFailed
                if recorded:
                    recorded = False
                else:
                    await journal.record(
                        self._attempt_started(plan, step.name, row), unless_cancelled=True
                    )
                result = await self.calls.call(journal, step, ctx, row, "call", step.execute)
                # Committed with the next step's start (or the checkout's end), before any call.
                await self._settled(
                    journal,
                    group,
                    Transition.of_step(
                        step.name,
                        status=StepStatus.succeeded,
                        result=json.dumps(result[1]),
                        http_status=result[0],
                        error=None,
                        finished_at=utcnow(),
                    ),
                )
                return
