"""The saga runner: drives one checkout from its last recorded step to a terminal state.

Every transition is committed to the journal before the next call is made: a step is marked
``running`` (attempt counted) before its call and ``succeeded``/``failed`` after it. Whatever
point a crash interrupts, the journal says what to do next, and repeating a call is safe because
each carries an Idempotency-Key derived from checkout, step and action.

Forward: steps run in the checkout's order; non-members' rewards step is ``skipped``.
Failure: when a compensatable step is refused (4xx) or exhausts its retries, the checkout's
``error`` is recorded first (so a restart resumes compensating, never going forward again), then
completed steps are compensated in reverse order, each retried until it succeeds; a step whose
outcome is unknown (its call may have been applied) is first settled by reading the service.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from orchestrator.clients import StepError, StepRefusedError, StepTransientError
from orchestrator.models import Checkout, Step, utcnow
from orchestrator.saga.crashpoints import CrashPoints
from orchestrator.saga.retry import RetryPolicy
from orchestrator.saga.steps import SagaContext, SagaStep, StepKind
from orchestrator.store import Journal

log = logging.getLogger("orchestrator.saga")


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
    ) -> None:
        self.journal = journal
        self.steps = steps
        self.policy = policy
        self.crash = crash_points or CrashPoints()

    async def drive(self, checkout_id: uuid.UUID, token: int) -> None:
        """Take the checkout from wherever its journal stands to completed or failed."""
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
        if checkout.error is None and await self._forward(ctx, order, by_name, token):
            await self.journal.record(checkout_id, token, checkout={"status": "completed"})
            log.info("checkout %s completed", checkout_id)
            return
        await self._compensate(ctx, order, by_name, token)
        await self.journal.record(checkout_id, token, checkout={"status": "failed"})
        log.info("checkout %s failed and was compensated", checkout_id)

    async def _forward(
        self, ctx: SagaContext, order: list[str], rows: dict[str, Step], token: int
    ) -> bool:
        """Run the steps not yet done; False once one fails for good (its error is recorded)."""
        checkout_id = uuid.UUID(ctx.checkout_id)
        for name in order:
            row = rows[name]
            if row.status in ("succeeded", "skipped"):
                continue
            step = self.steps[name]
            if not step.applies(ctx):
                now = utcnow()
                await self.journal.record(
                    checkout_id, token, step=(name, {"status": "skipped", "finished_at": now})
                )
                row.status = "skipped"
                continue
            policy = self.policy.forever() if step.kind is StepKind.RETRIABLE else self.policy
            try:
                await self._attempt(step, ctx, row, token, policy, step.execute, done="succeeded")
            except StepError as exc:
                failure = {"step": name, **exc.as_json()}
                row.status, row.error = "failed", json.dumps(exc.as_json())
                await self.journal.record(
                    checkout_id,
                    token,
                    checkout={"error": json.dumps(failure)},
                    step=(
                        name,
                        {
                            "status": "failed",
                            "error": row.error,
                            "http_status": exc.http_status,
                            "finished_at": utcnow(),
                        },
                    ),
                )
                log.info("checkout %s: step %s failed for good: %s", checkout_id, name, exc.detail)
                return False
        return True

    async def _attempt(
        self,
        step: SagaStep,
        ctx: SagaContext,
        row: Step,
        token: int,
        policy: RetryPolicy,
        call: Any,
        *,
        done: str,
    ) -> None:
        """Call ``call`` under ``policy``, journaling every attempt before and after."""
        checkout_id = uuid.UUID(ctx.checkout_id)
        forward = done == "succeeded"
        async for attempt in policy.attempts():
            with attempt:
                values: dict[str, Any] = {}
                if forward:
                    row.attempts += 1
                    values = {"status": "running", "attempts": row.attempts}
                    if row.started_at is None:
                        row.started_at = utcnow()
                        values["started_at"] = row.started_at
                    await self.journal.record(checkout_id, token, step=(step.name, values))
                phase = "call" if forward else "compensate"
                self.crash.reach(f"{step.name}:before_{phase}")
                try:
                    if forward:
                        http_status, result = await call(ctx)
                    else:
                        http_status, result = await call(ctx, json.loads(row.result or "{}"))
                except StepTransientError as exc:
                    log.warning(
                        "checkout %s: step %s attempt %s: %s",
                        checkout_id,
                        step.name,
                        row.attempts,
                        exc.detail,
                    )
                    await self.journal.record(
                        checkout_id,
                        token,
                        step=(
                            step.name,
                            {"error": json.dumps(exc.as_json()), "http_status": exc.http_status},
                        ),
                    )
                    raise
                self.crash.reach(f"{step.name}:after_{phase}")
                row.status, row.result = done, json.dumps(result)
                values = {"status": done, "result": row.result, "http_status": http_status}
                if forward:
                    values |= {"error": None, "finished_at": utcnow()}
                else:
                    # The forward error stays: it says why this step had to be undone.
                    values["compensated_at"] = utcnow()
                await self.journal.record(checkout_id, token, step=(step.name, values))
                return

    async def _compensate(
        self, ctx: SagaContext, order: list[str], rows: dict[str, Step], token: int
    ) -> None:
        """Undo completed steps in reverse order; steps never reached become ``skipped``."""
        checkout_id = uuid.UUID(ctx.checkout_id)
        for name in reversed(order):
            row, step = rows[name], self.steps[name]
            if row.status == "pending":
                await self.journal.record(
                    checkout_id, token, step=(name, {"status": "skipped", "finished_at": utcnow()})
                )
                continue
            if row.status in ("running", "failed") and self._maybe_applied(row):
                effect = await self._settle(step, ctx)
                if effect is None:
                    if row.status == "running":
                        await self.journal.record(
                            checkout_id,
                            token,
                            step=(name, {"status": "failed", "finished_at": utcnow()}),
                        )
                    continue
                row.result = json.dumps(effect)
                await self.journal.record(checkout_id, token, step=(name, {"result": row.result}))
            elif row.status != "succeeded":
                continue
            try:
                await self._attempt(
                    step,
                    ctx,
                    row,
                    token,
                    self.policy.forever(),
                    step.compensate,
                    done="compensated",
                )
            except StepRefusedError as exc:
                # A compensation the service refuses cannot succeed by retrying; record it for an operator.
                log.error(
                    "checkout %s: compensation of %s refused: %s", checkout_id, name, exc.detail
                )
                await self.journal.record(
                    checkout_id,
                    token,
                    step=(name, {"error": json.dumps({"compensation": exc.as_json()})}),
                )

    @staticmethod
    def _maybe_applied(row: Step) -> bool:
        """Whether a step that did not succeed may still have taken effect."""
        if row.status == "running":
            return True
        error = json.loads(row.error or "{}")
        return bool(error.get("retryable"))

    async def _settle(self, step: SagaStep, ctx: SagaContext) -> dict[str, Any] | None:
        """Read whether the step's effect exists, retrying the read until the service answers."""
        async for attempt in self.policy.forever().attempts():
            with attempt:
                return await step.settle(ctx)
        return None  # pragma: no cover - the loop only ends by returning or raising
