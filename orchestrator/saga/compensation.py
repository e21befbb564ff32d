"""Compensation: undo what a failing checkout did, group by group in reverse order.

A step that succeeded is undone; so is a step whose outcome is unknown (its call may have been
applied, or may still arrive): compensation voids the checkout at the service, undoing what
landed and refusing what comes later; if nothing had landed, the step ends ``failed`` rather
than ``compensated``. The steps of one group are compensated at once, each retried until the
service accepts it; a compensation the service refuses is recorded for an operator.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

from orchestrator.clients import StepRefusedError
from orchestrator.journal.lease import LeasedCheckout
from orchestrator.journal.records import StepRecord, Transition, utcnow
from orchestrator.saga.calls import StepCalls
from orchestrator.saga.concurrently import settle_all
from orchestrator.saga.plan import Plan
from orchestrator.saga.retry import RetryPolicy
from orchestrator.saga.steps import Compensation, SagaContext, SagaStep
from orchestrator.saga.telemetry import SagaTelemetry
from orchestrator.statuses import StepStatus


class Compensator:
    """Undoes a failing checkout's steps."""

    def __init__(
        self,
        steps: dict[str, SagaStep],
        policy: RetryPolicy,
        calls: StepCalls,
        telemetry: SagaTelemetry,
    ) -> None:
        self.steps = steps
        self.policy = policy
        self.calls = calls
        self.telemetry = telemetry

    async def run(self, journal: LeasedCheckout, ctx: SagaContext, plan: Plan) -> None:
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
                    done = await self.calls.call(journal, step, ctx, row, "compensate", compensate)
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
