"""The saga runner: drives one checkout from its last recorded step to a terminal state.

Every transition is committed to the journal before the next call is made: a step is marked
``running`` (attempt counted) before its call and ``succeeded``/``failed`` after it (a success
is committed with the next step's start, in one transaction: see ``orchestrator.journal.lease``). Whatever
point a crash interrupts, the journal says what to do next, and repeating a call is safe because
each carries an Idempotency-Key derived from checkout, step and action.

The runner never changes a step's or the checkout's record itself: it hands transitions to the
checkout's lease (``LeasedCheckout``), which applies each one to the records once it is
committed, so what the runner decides from is always what a restart would read back.

Forward: the plan's groups run in turn, the steps of a group at once (``saga.plan``: kinds and
rules; ``saga.concurrently``); non-members' rewards step is ``skipped``. A compensatable step
(or the pivot) that keeps failing transiently is retried under the step policy, then the
checkout is *parked* (lease given up, resumed ``RESUME_DELAY_S`` later by any replica, at the
group's unfinished steps) until its deadline. Steps that run to completion (retriable ones,
after the pivot, and the email wherever it stands) are retried until they succeed; a retriable
step refused for good is kept on its step and tried again when the checkout resumes.
Failure: a refusal (4xx), a deadline passed, or an operator's cancel records the checkout's
``error`` first (so a restart resumes compensating, never going forward again); the other steps
of its group stop retrying and settle, then completed steps are compensated group by group in
reverse order, each retried until it succeeds. A step whose outcome is
unknown (its call may have been applied, or may still arrive) is compensated too: compensation
voids the checkout at the service, undoing what landed and refusing what comes later; if
nothing had landed, the step ends ``failed`` rather than ``compensated``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from orchestrator.clients import StepError, StepRefusedError, StepTransientError
from orchestrator.journal.journal import CancelRequestedError, Journal
from orchestrator.journal.lease import LeasedCheckout
from orchestrator.journal.records import CheckoutRecord, Loaded, StepRecord, Transition, utcnow
from orchestrator.saga.concurrently import settle_all
from orchestrator.saga.crashpoints import CrashPoints
from orchestrator.saga.plan import Plan, StepKind, parse_plan
from orchestrator.saga.retry import RetryPolicy
from orchestrator.saga.steps import Compensation, SagaContext, SagaStep
from orchestrator.saga.telemetry import SagaTelemetry
from orchestrator.statuses import UNFINISHED_STATUSES, CheckoutStatus, StepStatus

T = TypeVar("T")

FORWARD_DONE, FORWARD_FAILED, FORWARD_PARKED = "done", "failed", "parked"
DONE_STEP_STATUSES = (StepStatus.succeeded, StepStatus.skipped)
# Why a checkout must wait before a step is tried again: the step, its attempts, the detail.
_Wait = tuple[str, int, str]


@dataclass
class _Group:
    """One forward pass over a group of steps, shared by its steps running at once."""

    unsettled: int  # steps of the group still running
    failing: bool = False  # the checkout's error is recorded: the others stop retrying


class _SiblingFailed(Exception):
    """Another step of the group failed the checkout; this one makes no further attempt."""


def context_of(checkout: CheckoutRecord) -> SagaContext:
    """The saga's view of a recorded checkout."""
    return SagaContext(
        checkout_id=str(checkout.id),
        customer=json.loads(checkout.customer),
        items=json.loads(checkout.items),
        currency=checkout.currency,
        total=f"{checkout.total_cents // 100}.{checkout.total_cents % 100:02d}",
        points=checkout.points,
    )


class SagaRunner:
    """Runs checkouts through their steps, writing every transition to the journal."""

    def __init__(
        self,
        journal: Journal,
        steps: dict[str, SagaStep],
        policy: RetryPolicy,
        crash_points: CrashPoints | None = None,
        *,
        resume_delay_s: float = 30.0,
        telemetry: SagaTelemetry | None = None,
    ) -> None:
        self.journal = journal
        self.steps = steps
        self.policy = policy
        self.crash = crash_points or CrashPoints()
        self.resume_delay_s = resume_delay_s
        self.telemetry = telemetry or SagaTelemetry()

    async def drive(
        self, checkout_id: uuid.UUID, token: int, loaded: Loaded | None = None
    ) -> Loaded | None:
        """Take the checkout from wherever its journal stands to completed, failed or parked.

        ``loaded``: the checkout and steps as just recorded (a checkout this replica created), to
        spare reading them back. Returns them as the journal holds them once the drive ends
        (None for a checkout that does not exist).
        """
        with self.telemetry.driving(checkout_id):
            if loaded is None:
                loaded = await self.journal.load(checkout_id)
                if loaded is None:
                    return None
            lease = LeasedCheckout(self.journal, loaded, token)
            if lease.checkout.status in UNFINISHED_STATUSES:
                await self._drive(lease)
            return lease.loaded()

    async def _drive(self, journal: LeasedCheckout) -> None:
        checkout_id, checkout = journal.checkout_id, journal.checkout
        ctx = context_of(checkout)
        plan = parse_plan(checkout.step_order)
        if checkout.status == CheckoutStatus.pending:
            journal.later(Transition.of_checkout(status=CheckoutStatus.running))
        if checkout.error is None:
            outcome = await self._forward(journal, ctx, plan, checkout.deadline_at)
            if outcome == FORWARD_PARKED:
                return
            if outcome == FORWARD_DONE:
                await journal.record(Transition.of_checkout(status=CheckoutStatus.completed))
                self.telemetry.checkout_finished(checkout_id, CheckoutStatus.completed)
                return
        await self._compensate(journal, ctx, plan)
        await journal.record(Transition.of_checkout(status=CheckoutStatus.failed))
        self.telemetry.checkout_finished(checkout_id, CheckoutStatus.failed)

    async def _forward(
        self, journal: LeasedCheckout, ctx: SagaContext, plan: Plan, deadline_at: float | None
    ) -> str:
        """Run the groups not yet done, in turn: done, failed (its error recorded) or parked."""
        for group in plan.groups:
            rows = journal.steps
            todo = [name for name in group if rows[name].status not in DONE_STEP_STATUSES]
            if not todo:
                continue
            forward = _Group(unsettled=len(todo))
            outcomes = await settle_all(
                [
                    self._forward_step(journal, ctx, plan, name, forward, deadline_at)
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

    async def _forward_step(
        self,
        journal: LeasedCheckout,
        ctx: SagaContext,
        plan: Plan,
        name: str,
        group: _Group,
        deadline_at: float | None,
    ) -> _Wait | None:
        """Take one step forward; None once it succeeded, was skipped or failed the checkout,
        else why the checkout must wait (step, attempts, detail) before it is tried again."""
        row, step = journal.steps[name], self.steps[name]
        if not step.applies(ctx):
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
                row,
                self.policy.forever() if to_completion else self.policy,
                group,
                past_pivot=to_completion,
            )
            return None
        except _SiblingFailed:
            return None
        except CancelRequestedError:
            await self._fail(
                journal, group, None, {"kind": "cancelled", "detail": "Cancelled by an operator."}
            )
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
        row: StepRecord,
        policy: RetryPolicy,
        group: _Group,
        *,
        past_pivot: bool,
    ) -> None:
        """Call the step forward under ``policy``, journaling every attempt before and after it."""
        async for attempt in policy.attempts():
            with attempt:
                if group.failing and (row.attempts == 0 or not past_pivot):
                    # Another step of the group failed the checkout: no further attempt. Except
                    # for a step that runs to completion once started (the email): an attempt of
                    # it may still land (a request on its way), and only its success lets its
                    # compensation (a cancellation) follow the confirmation, never precede it.
                    group.unsettled -= 1
                    raise _SiblingFailed
                values: dict[str, Any] = {
                    "status": StepStatus.running,
                    "attempts": row.attempts + 1,
                }
                if row.started_at is None:
                    values["started_at"] = utcnow()
                # Starting a step that must run to completion passes the point of no return: from
                # then on the checkout can no longer be cancelled. Checked against a pending cancel
                # atomically.
                pivot = {"past_pivot": True} if past_pivot else {}
                await journal.record(Transition(pivot, {step.name: values}), unless_cancelled=True)
                result = await self._call(journal, step, ctx, row, "call", step.execute)
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

    async def _call(
        self,
        journal: LeasedCheckout,
        step: SagaStep,
        ctx: SagaContext,
        row: StepRecord,
        phase: str,
        call: Callable[[SagaContext], Awaitable[T]],
    ) -> T:
        """One call to a service; a transient error is journaled on the step, then re-raised."""
        self.crash.reach(f"{step.name}:before_{phase}")
        try:
            with self.telemetry.step_call(ctx.checkout_id, step.name, phase, row.attempts):
                outcome = await call(ctx)
        except StepTransientError as exc:
            # A compensation's error joins the step's forward error rather than replacing it: after
            # a restart, that forward error is what says the step may have taken effect.
            error = (
                exc.as_json()
                if phase == "call"
                else {**json.loads(row.error or "{}"), "compensation": exc.as_json()}
            )
            await journal.record(
                Transition.of_step(step.name, error=json.dumps(error), http_status=exc.http_status)
            )
            raise
        self.crash.reach(f"{step.name}:after_{phase}")
        return outcome

    async def _compensate(self, journal: LeasedCheckout, ctx: SagaContext, plan: Plan) -> None:
        """Undo completed steps, and steps that may have taken effect, group by group in reverse
        order (the steps of one group at once).

        Steps never reached become ``skipped``; steps refused for good stay ``failed``.
        """
        rows = journal.steps
        for group in reversed(plan.groups):
            never_reached = Transition()
            undo: list[Awaitable[None]] = []
            for name in group:
                row, step = rows[name], self.steps[name]
                if row.status == StepStatus.pending:
                    never_reached = never_reached.then(
                        Transition.of_step(name, status=StepStatus.skipped, finished_at=utcnow())
                    )
                elif row.status == StepStatus.succeeded:
                    undo.append(self._undo(journal, step, ctx, row, json.loads(row.result or "{}")))
                elif row.status in (StepStatus.running, StepStatus.failed) and self._maybe_applied(
                    row
                ):
                    undo.append(self._undo(journal, step, ctx, row, None))
            if never_reached:
                await journal.record(never_reached)
            if undo:
                await settle_all(undo)

    async def _undo(
        self,
        journal: LeasedCheckout,
        step: SagaStep,
        ctx: SagaContext,
        row: StepRecord,
        result: dict[str, Any] | None,
    ) -> None:
        """Compensate one step (``result`` None: its outcome is unknown), retrying until accepted."""

        async def compensate(context: SagaContext) -> Compensation:
            return await step.compensate(context, result)

        try:
            async for attempt in self.policy.forever().attempts():
                with attempt:
                    done = await self._call(journal, step, ctx, row, "compensate", compensate)
        except StepRefusedError as exc:
            # A compensation the service refuses cannot succeed by retrying; record it for an operator.
            self.telemetry.compensation_abandoned(journal.checkout_id, step.name, exc)
            await journal.record(
                Transition.of_step(
                    step.name,
                    error=json.dumps(
                        {**json.loads(row.error or "{}"), "compensation": exc.as_json()}
                    ),
                )
            )
            return
        # The step's forward error (if any) stays: it says why this step had to be undone.
        values: dict[str, Any] = {
            "result": json.dumps(done.summary),
            "http_status": done.http_status,
        }
        if done.undid:
            values |= {"status": StepStatus.compensated, "compensated_at": utcnow()}
        else:
            # Its effect never landed, and the void means it never will: the step simply failed.
            values |= {"status": StepStatus.failed, "finished_at": row.finished_at or utcnow()}
        await journal.record(Transition(steps={step.name: values}))

    @staticmethod
    def _maybe_applied(row: StepRecord) -> bool:
        """Whether a step that did not succeed may still have taken effect.

        Only a step whose one and only call was refused surely did nothing: with several
        attempts, an earlier one may have timed out and still be on its way.
        """
        if row.status == StepStatus.running or row.attempts > 1:
            return True
        error = json.loads(row.error or "{}")
        return bool(error.get("retryable"))
