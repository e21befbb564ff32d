"""One call of a step or of its compensation, as the saga makes it.

Around the call: its crash points (``{step}:before_call`` … ``{step}:after_compensate``) and
its telemetry (span, duration, log events). A transient error is journaled on the step, then
re-raised for the retry policy: after a restart, that error is what says the step may have
taken effect.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

from orchestrator.clients import StepTransientError
from orchestrator.journal.lease import LeasedCheckout
from orchestrator.journal.records import StepRecord, Transition
from orchestrator.saga.crashpoints import CrashPoints
from orchestrator.saga.steps import SagaContext, SagaStep
from orchestrator.saga.telemetry import SagaTelemetry

T = TypeVar("T")


class StepCalls:
    """Makes the saga's calls to the services, for the forward pass and for compensation."""

    def __init__(self, crash: CrashPoints, telemetry: SagaTelemetry) -> None:
        self.crash = crash
        self.telemetry = telemetry

    async def call(
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
