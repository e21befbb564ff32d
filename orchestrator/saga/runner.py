"""The saga runner: drives one checkout from its last recorded step to a terminal state.

Every transition is committed to the journal before the next call is made: a step is marked
``running`` (attempt counted) before its call and ``succeeded``/``failed`` after it (a success
is committed with the next step's start, in one transaction: see ``orchestrator.journal.lease``). Whatever
point a crash interrupts, the journal says what to do next, and repeating a call is safe because
each carries an Idempotency-Key derived from checkout, step and action.

The runner never changes a step's or the checkout's record itself: it hands transitions to the
checkout's lease (``LeasedCheckout``), which applies each one to the records once it is
committed, so what the runner decides from is always what a restart would read back.

Forward: steps run in the checkout's order; non-members' rewards step is ``skipped``. A
compensatable step that keeps failing transiently is retried under the step policy, then the
checkout is *parked* (lease given up, resumed ``RESUME_DELAY_S`` later by any replica) until
its deadline; the email step, past the pivot, is retried until it succeeds.
Failure: a refusal (4xx), a deadline passed, or an operator's cancel records the checkout's
``error`` first (so a restart resumes compensating, never going forward again), then completed
steps are compensated in reverse order, each retried until it succeeds. A step whose outcome is
unknown (its call may have been applied, or may still arrive) is compensated too: compensation
voids the checkout at the service, undoing what landed and refusing what comes later; if
nothing had landed, the step ends ``failed`` rather than ``compensated``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from orchestrator.clients import StepError, StepRefusedError, StepTransientError
from orchestrator.journal.journal import CancelRequestedError, Journal
from orchestrator.journal.lease import LeasedCheckout
from orchestrator.journal.records import CheckoutRecord, Loaded, StepRecord, Transition, utcnow
from orchestrator.saga.crashpoints import CrashPoints
from orchestrator.saga.retry import RetryPolicy
from orchestrator.saga.steps import Compensation, SagaContext, SagaStep, StepKind
from orchestrator.saga.telemetry import SagaTelemetry
from orchestrator.statuses import UNFINISHED_STATUSES, CheckoutStatus, StepStatus

T = TypeVar("T")

FORWARD_DONE, FORWARD_FAILED, FORWARD_PARKED = "done", "failed", "parked"


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
        checkout_id, checkout, by_name = journal.checkout_id, journal.checkout, journal.steps
        ctx = context_of(checkout)
        order = [step.name for step in journal.loaded()[1]]
        if checkout.status == CheckoutStatus.pending:
            journal.later(Transition.of_checkout(status=CheckoutStatus.running))
        if checkout.error is None:
            outcome = await self._forward(journal, ctx, order, by_name, checkout.deadline_at)
            if outcome == FORWARD_PARKED:
                return
            if outcome == FORWARD_DONE:
                await journal.record(Transition.of_checkout(status=CheckoutStatus.completed))
                self.telemetry.checkout_finished(checkout_id, CheckoutStatus.completed)
                return
        await self._compensate(journal, ctx, order, by_name)
        await journal.record(Transition.of_checkout(status=CheckoutStatus.failed))
        self.telemetry.checkout_finished(checkout_id, CheckoutStatus.failed)

    async def _forward(
        self,
        journal: LeasedCheckout,
        ctx: SagaContext,
        order: list[str],
        rows: dict[str, StepRecord],
        deadline_at: float | None,
    ) -> str:
        """Run the steps not yet done: done, failed (its error recorded) or parked."""
        checkout_id = journal.checkout_id
        for name in order:
            row = rows[name]
            if row.status in (StepStatus.succeeded, StepStatus.skipped):
                continue
            step = self.steps[name]
            if not step.applies(ctx):
                journal.later(
                    Transition.of_step(name, status=StepStatus.skipped, finished_at=utcnow())
                )
                continue
            retriable = step.kind is StepKind.RETRIABLE
            try:
                await self._attempt(
                    journal, step, ctx, row, self.policy.forever() if retriable else self.policy
                )
            except CancelRequestedError:
                await self._fail(
                    journal, None, {"kind": "cancelled", "detail": "Cancelled by an operator."}
                )
                return FORWARD_FAILED
            except StepTransientError as exc:
                if deadline_at is None or time.time() < deadline_at:
                    until = time.time() + self.resume_delay_s
                    await journal.park(until=until)
                    self.telemetry.checkout_parked(
                        checkout_id, step=name, attempt=row.attempts, detail=exc.detail, until=until
                    )
                    return FORWARD_PARKED
                await self._fail(
                    journal, row, {"step": name, "deadline_passed": True, **exc.as_json()}, exc
                )
                return FORWARD_FAILED
            except StepError as exc:
                await self._fail(journal, row, {"step": name, **exc.as_json()}, exc)
                return FORWARD_FAILED
        return FORWARD_DONE

    async def _fail(
        self,
        journal: LeasedCheckout,
        row: StepRecord | None,
        failure: dict[str, Any],
        exc: StepError | None = None,
    ) -> None:
        """Record why the checkout fails (and the failing step's state) in one transition."""
        transition = Transition.of_checkout(error=json.dumps(failure))
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
        await journal.record(transition)
        self.telemetry.checkout_failing(journal.checkout_id, failure, row.attempts if row else None)

    async def _attempt(
        self,
        journal: LeasedCheckout,
        step: SagaStep,
        ctx: SagaContext,
        row: StepRecord,
        policy: RetryPolicy,
    ) -> None:
        """Call the step forward under ``policy``, journaling every attempt before and after it."""
        async for attempt in policy.attempts():
            with attempt:
                values: dict[str, Any] = {
                    "status": StepStatus.running,
                    "attempts": row.attempts + 1,
                }
                if row.started_at is None:
                    values["started_at"] = utcnow()
                # Starting the first step that cannot be undone passes the pivot: from then on the
                # checkout can no longer be cancelled. Checked against a pending cancel atomically.
                pivot = {"past_pivot": True} if step.kind is StepKind.RETRIABLE else {}
                await journal.record(Transition(pivot, {step.name: values}), unless_cancelled=True)
                result = await self._call(journal, step, ctx, row, "call", step.execute)
                # Committed with the next step's start (or the checkout's end), before any call.
                journal.later(
                    Transition.of_step(
                        step.name,
                        status=StepStatus.succeeded,
                        result=json.dumps(result[1]),
                        http_status=result[0],
                        error=None,
                        finished_at=utcnow(),
                    )
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

    async def _compensate(
        self,
        journal: LeasedCheckout,
        ctx: SagaContext,
        order: list[str],
        rows: dict[str, StepRecord],
    ) -> None:
        """Undo completed steps, and steps that may have taken effect, in reverse order.

        Steps never reached become ``skipped``; steps refused for good stay ``failed``.
        """
        for name in reversed(order):
            row, step = rows[name], self.steps[name]
            if row.status == StepStatus.pending:
                await journal.record(
                    Transition.of_step(name, status=StepStatus.skipped, finished_at=utcnow())
                )
            elif row.status == StepStatus.succeeded:
                await self._undo(journal, step, ctx, row, json.loads(row.result or "{}"))
            elif row.status in (StepStatus.running, StepStatus.failed) and self._maybe_applied(row):
                await self._undo(journal, step, ctx, row, None)

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
