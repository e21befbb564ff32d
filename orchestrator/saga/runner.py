"""The saga runner: drives one checkout from its last recorded step to a terminal state.

Every transition is committed to the journal before the next call is made (``saga.forward``: a
step is marked ``running``, attempt counted, before its call; its success is committed with the
next write, which comes before any further call: see ``orchestrator.journal.lease``). Whatever
point a crash interrupts, the journal says what to do next, and repeating a call is safe because
each carries an Idempotency-Key derived from checkout, step and action.

The runner never changes a step's or the checkout's record itself: it hands transitions to the
checkout's lease (``LeasedCheckout``), which applies each one to the records once it is
committed, so what the runner decides from is always what a restart would read back.

A drive: forward through the plan's groups (``saga.forward``); all done: completed; parked: the
drive ends and a replica resumes it later; failed (its error recorded): compensation
(``saga.compensation``), then failed. A checkout whose error is recorded is only compensated.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from orchestrator.journal.journal import Journal
from orchestrator.journal.lease import LeasedCheckout
from orchestrator.journal.records import CheckoutRecord, Loaded, StepRecord, Transition
from orchestrator.saga.calls import StepCalls
from orchestrator.saga.compensation import Compensator
from orchestrator.saga.crashpoints import CrashPoints
from orchestrator.saga.forward import FORWARD_DONE, FORWARD_PARKED, Forward
from orchestrator.saga.plan import parse_plan
from orchestrator.saga.retry import RetryPolicy
from orchestrator.saga.steps import SagaContext, SagaStep
from orchestrator.saga.telemetry import SagaTelemetry
from orchestrator.statuses import UNFINISHED_STATUSES, CheckoutStatus


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
        self.telemetry = telemetry or SagaTelemetry()
        calls = StepCalls(crash_points or CrashPoints(), self.telemetry)
        self.forward = Forward(steps, policy, calls, self.telemetry, resume_delay_s)
        self.compensator = Compensator(steps, policy, calls, self.telemetry)

    def first_start(self, loaded: Loaded) -> Transition:
        """A new checkout's first transition (running, its first group started), for the
        journal to insert with it (``Journal.create``'s ``start``): the checkout is then driven
        with ``first_started``, and its first call follows its insert with no write between."""
        checkout, steps = loaded
        return Transition.of_checkout(status=CheckoutStatus.running).then(
            self.forward.first_start(
                context_of(checkout),
                parse_plan(checkout.step_order),
                {step.name: step for step in steps},
            )
        )

    async def drive(
        self,
        checkout_id: uuid.UUID,
        token: int,
        loaded: Loaded | None = None,
        *,
        first_started: bool = False,
    ) -> Loaded | None:
        """Take the checkout from wherever its journal stands to completed, failed or parked.

        ``loaded``: the checkout and steps as just recorded (a checkout this replica created), to
        spare reading them back; ``first_started``: recorded with ``first_start``, whose
        attempts are yet to be made. Returns them as the journal holds them once the drive ends
        (None for a checkout that does not exist).
        """
        with self.telemetry.driving(checkout_id):
            if loaded is None:
                loaded = await self.journal.load(checkout_id)
                if loaded is None:
                    return None
            lease = LeasedCheckout(self.journal, loaded, token)
            if lease.checkout.status in UNFINISHED_STATUSES:
                await self._drive(lease, first_started)
            return lease.loaded()

    async def _drive(self, journal: LeasedCheckout, first_started: bool) -> None:
        checkout_id, checkout = journal.checkout_id, journal.checkout
        ctx = context_of(checkout)
        plan = parse_plan(checkout.step_order)
        if checkout.status == CheckoutStatus.pending:
            journal.later(Transition.of_checkout(status=CheckoutStatus.running))
        if checkout.error is None:
            outcome = await self.forward.run(
                journal, ctx, plan, checkout.deadline_at, first_started=first_started
            )
            if outcome == FORWARD_PARKED:
                return
            if outcome == FORWARD_DONE:
                await journal.record(Transition.of_checkout(status=CheckoutStatus.completed))
                self.telemetry.checkout_finished(
                    checkout_id, CheckoutStatus.completed, *self._summary(journal)
                )
                return
        await self.compensator.run(journal, ctx, plan)
        await journal.record(Transition.of_checkout(status=CheckoutStatus.failed))
        self.telemetry.checkout_finished(
            checkout_id, CheckoutStatus.failed, *self._summary(journal)
        )

    @staticmethod
    def _summary(journal: LeasedCheckout) -> tuple[list[StepRecord], datetime]:
        """What the checkout's last log line names: its steps, and when it was placed."""
        return journal.loaded()[1], journal.checkout.created_at
