"""The saga runner: drives one checkout from its last recorded step to a terminal state.

Every transition is committed to the journal before the next call is made: a step is marked
``running`` (attempt counted) before its call and ``succeeded``/``failed`` after it. Whatever
point a crash interrupts, the journal says what to do next, and repeating a call is safe because
each carries an Idempotency-Key derived from checkout, step and action.

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
from orchestrator.models import Checkout, Step, utcnow
from orchestrator.saga.crashpoints import CrashPoints
from orchestrator.saga.retry import RetryPolicy
from orchestrator.saga.steps import Compensation, SagaContext, SagaStep, StepKind
from orchestrator.saga.telemetry import SagaTelemetry
from orchestrator.store import CancelRequestedError, Journal

T = TypeVar("T")

FORWARD_DONE, FORWARD_FAILED, FORWARD_PARKED = "done", "failed", "parked"


def context_of(checkout: Checkout) -> SagaContext:
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

    async def drive(self, checkout_id: uuid.UUID, token: int) -> None:
        """Take the checkout from wherever its journal stands to completed, failed or parked."""
        with self.telemetry.driving(checkout_id):
            await self._drive(checkout_id, token)

    async def _drive(self, checkout_id: uuid.UUID, token: int) -> None:
        loaded = await self.journal.load(checkout_id)
        if loaded is None:
            return
        checkout, rows = loaded
        if checkout.status not in ("pending", "running"):
            return
        ctx = context_of(checkout)
        by_name = {row.name: row for row in rows}
        order = [row.name for row in sorted(rows, key=lambda r: r.position)]
        if checkout.status == "pending":
            await self.journal.record(checkout_id, token, checkout={"status": "running"})
        if checkout.error is None:
            outcome = await self._forward(ctx, order, by_name, token, checkout.deadline_at)
            if outcome == FORWARD_PARKED:
                return
            if outcome == FORWARD_DONE:
                await self.journal.record(checkout_id, token, checkout={"status": "completed"})
                self.telemetry.checkout_finished(checkout_id, "completed")
                return
        await self._compensate(ctx, order, by_name, token)
        await self.journal.record(checkout_id, token, checkout={"status": "failed"})
        self.telemetry.checkout_finished(checkout_id, "failed")

    async def _forward(
        self,
        ctx: SagaContext,
        order: list[str],
        rows: dict[str, Step],
        token: int,
        deadline_at: float | None,
    ) -> str:
        """Run the steps not yet done: done, failed (its error recorded) or parked."""
        checkout_id = uuid.UUID(ctx.checkout_id)
        for name in order:
            row = rows[name]
            if row.status in ("succeeded", "skipped"):
                continue
            step = self.steps[name]
            if not step.applies(ctx):
                await self.journal.record(
                    checkout_id, token, step=(name, {"status": "skipped", "finished_at": utcnow()})
                )
                row.status = "skipped"
                continue
            retriable = step.kind is StepKind.RETRIABLE
            try:
                await self._attempt(
                    step, ctx, row, token, self.policy.forever() if retriable else self.policy
                )
            except CancelRequestedError:
                await self._fail(
                    checkout_id,
                    token,
                    None,
                    {"kind": "cancelled", "detail": "Cancelled by an operator."},
                )
                return FORWARD_FAILED
            except StepTransientError as exc:
                if deadline_at is None or time.time() < deadline_at:
                    until = time.time() + self.resume_delay_s
                    await self.journal.park(checkout_id, token, until=until)
                    self.telemetry.checkout_parked(
                        checkout_id, step=name, attempt=row.attempts, detail=exc.detail, until=until
                    )
                    return FORWARD_PARKED
                await self._fail(
                    checkout_id,
                    token,
                    row,
                    {"step": name, "deadline_passed": True, **exc.as_json()},
                    exc,
                )
                return FORWARD_FAILED
            except StepError as exc:
                await self._fail(checkout_id, token, row, {"step": name, **exc.as_json()}, exc)
                return FORWARD_FAILED
        return FORWARD_DONE

    async def _fail(
        self,
        checkout_id: uuid.UUID,
        token: int,
        row: Step | None,
        failure: dict[str, Any],
        exc: StepError | None = None,
    ) -> None:
        """Record why the checkout fails (and the failing step's state) in one transition."""
        step = None
        if row is not None and exc is not None:
            row.status, row.error = "failed", json.dumps(exc.as_json())
            step = (
                row.name,
                {
                    "status": "failed",
                    "error": row.error,
                    "http_status": exc.http_status,
                    "finished_at": utcnow(),
                },
            )
        await self.journal.record(
            checkout_id, token, checkout={"error": json.dumps(failure)}, step=step
        )
        self.telemetry.checkout_failing(checkout_id, failure, row.attempts if row else None)

    async def _attempt(
        self, step: SagaStep, ctx: SagaContext, row: Step, token: int, policy: RetryPolicy
    ) -> None:
        """Call the step forward under ``policy``, journaling every attempt before and after it."""
        checkout_id = uuid.UUID(ctx.checkout_id)
        async for attempt in policy.attempts():
            with attempt:
                row.attempts += 1
                values: dict[str, Any] = {"status": "running", "attempts": row.attempts}
                if row.started_at is None:
                    row.started_at = values["started_at"] = utcnow()
                # Starting the first step that cannot be undone passes the pivot: from then on the
                # checkout can no longer be cancelled. Checked against a pending cancel atomically.
                pivot = {"past_pivot": True} if step.kind is StepKind.RETRIABLE else None
                await self.journal.record(
                    checkout_id,
                    token,
                    checkout=pivot,
                    step=(step.name, values),
                    unless_cancelled=True,
                )
                result = await self._call(step, ctx, row, token, "call", step.execute)
                row.status, row.result = "succeeded", json.dumps(result[1])
                await self.journal.record(
                    checkout_id,
                    token,
                    step=(
                        step.name,
                        {
                            "status": "succeeded",
                            "result": row.result,
                            "http_status": result[0],
                            "error": None,
                            "finished_at": utcnow(),
                        },
                    ),
                )
                return

    async def _call(
        self,
        step: SagaStep,
        ctx: SagaContext,
        row: Step,
        token: int,
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
            await self.journal.record(
                uuid.UUID(ctx.checkout_id),
                token,
                step=(step.name, {"error": json.dumps(error), "http_status": exc.http_status}),
            )
            raise
        self.crash.reach(f"{step.name}:after_{phase}")
        return outcome

    async def _compensate(
        self, ctx: SagaContext, order: list[str], rows: dict[str, Step], token: int
    ) -> None:
        """Undo completed steps, and steps that may have taken effect, in reverse order.

        Steps never reached become ``skipped``; steps refused for good stay ``failed``.
        """
        checkout_id = uuid.UUID(ctx.checkout_id)
        for name in reversed(order):
            row, step = rows[name], self.steps[name]
            if row.status == "pending":
                await self.journal.record(
                    checkout_id, token, step=(name, {"status": "skipped", "finished_at": utcnow()})
                )
            elif row.status == "succeeded":
                await self._undo(step, ctx, row, token, json.loads(row.result or "{}"))
            elif row.status in ("running", "failed") and self._maybe_applied(row):
                await self._undo(step, ctx, row, token, None)

    async def _undo(
        self,
        step: SagaStep,
        ctx: SagaContext,
        row: Step,
        token: int,
        result: dict[str, Any] | None,
    ) -> None:
        """Compensate one step (``result`` None: its outcome is unknown), retrying until accepted."""
        checkout_id = uuid.UUID(ctx.checkout_id)

        async def compensate(context: SagaContext) -> Compensation:
            return await step.compensate(context, result)

        try:
            async for attempt in self.policy.forever().attempts():
                with attempt:
                    done = await self._call(step, ctx, row, token, "compensate", compensate)
        except StepRefusedError as exc:
            # A compensation the service refuses cannot succeed by retrying; record it for an operator.
            self.telemetry.compensation_abandoned(checkout_id, step.name, exc)
            await self.journal.record(
                checkout_id,
                token,
                step=(
                    step.name,
                    {
                        "error": json.dumps(
                            {**json.loads(row.error or "{}"), "compensation": exc.as_json()}
                        )
                    },
                ),
            )
            return
        row.result = json.dumps(done.summary)
        # The step's forward error (if any) stays: it says why this step had to be undone.
        values: dict[str, Any] = {"result": row.result, "http_status": done.http_status}
        if done.undid:
            row.status = "compensated"
            values |= {"status": "compensated", "compensated_at": utcnow()}
        else:
            # Its effect never landed, and the void means it never will: the step simply failed.
            row.status = "failed"
            values |= {"status": "failed", "finished_at": row.finished_at or utcnow()}
        await self.journal.record(checkout_id, token, step=(step.name, values))

    @staticmethod
    def _maybe_applied(row: Step) -> bool:
        """Whether a step that did not succeed may still have taken effect.

        Only a step whose one and only call was refused surely did nothing: with several
        attempts, an earlier one may have timed out and still be on its way.
        """
        if row.status == "running" or row.attempts > 1:
            return True
        error = json.loads(row.error or "{}")
        return bool(error.get("retryable"))
