"""The journal's feed: every checkout event, written to the checkout and its steps.

The services publish what they did; the feed turns each event into the ``Transition`` the saga
runner would have committed for the same outcome, so the API, the dashboard and the metrics read
a choreographed checkout like an orchestrated one:

- ``checkout.placed``: the checkout runs; its first step is under way.
- ``step.succeeded`` / ``step.skipped``: that step is done, the next one under way; after the
  last step, the checkout is ``completed``.
- ``step.refused``: that step failed; the checkout records why and compensates (or, when it was
  the first step, fails at once).
- ``step.compensated``: that step was undone (``failed`` if it had nothing to undo); after the
  first step, the checkout is ``failed``, its unreached steps ``skipped``.

Events may arrive twice or, after a redelivery, late: the inbox skips a message applied before,
and a step's status only ever moves forward (pending → running → done → compensated), so an
event arriving late changes nothing it should not. One replica's feed consumes at a time
(single active consumer).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from orchestrator.choreography.placing import CHOREOGRAPHY
from orchestrator.journal.journal import Journal, LeaseLostError
from orchestrator.journal.records import CheckoutRecord, StepRecord, Transition, utcnow
from orchestrator.saga.metrics import SagaMetrics
from orchestrator.statuses import TERMINAL_STATUSES, CheckoutStatus, StepStatus
from servicekit.db.statements import Transaction
from servicekit.events.envelope import Event
from servicekit.events.reactor import Reaction, Work
from servicekit.events.saga import COMPENSATED, EVENT_TYPES, PLACED, REFUSED, SKIPPED, SUCCEEDED

log = logging.getLogger(__name__)

_RANK = {
    StepStatus.pending: 0,
    StepStatus.running: 1,
    StepStatus.succeeded: 2,
    StepStatus.skipped: 2,
    StepStatus.failed: 2,
    StepStatus.compensated: 3,
}


def _last_event(event: Event) -> str:
    step = event.data.get("step")
    return json.dumps(
        {
            "type": event.type,
            "step": step,
            "source": event.source,
            "message_id": event.message_id,
            "occurred_at": event.occurred_at,
        }
    )


def _when(event: Event) -> datetime:
    """When the event happened, by its publisher's clock (timings are the services' own)."""
    try:
        when = datetime.fromisoformat(event.occurred_at)
    except ValueError:
        return utcnow()
    return when if when.tzinfo is not None else utcnow()


def transition_for(
    event: Event, checkout: CheckoutRecord, steps: dict[str, StepRecord]
) -> Transition:
    """What ``event`` changes in the journal; an empty transition if nothing (seen before)."""
    if checkout.status in TERMINAL_STATUSES:
        return Transition()
    plan: list[str] = event.data["plan"]
    now = _when(event)
    changes: dict[str, dict[str, Any]] = {}

    def move(name: str, status: StepStatus, **values: Any) -> None:
        step = steps.get(name)
        if step is None or _RANK[status] <= _RANK[StepStatus(step.status)]:
            return
        values["status"] = status
        if status == StepStatus.skipped:
            # As the saga records a step the checkout does not need: never attempted.
            values |= {"attempts": 0, "started_at": None}
        elif status == StepStatus.running:
            values |= {"attempts": step.attempts + 1, "started_at": step.started_at or now}
        else:
            values |= {"attempts": max(step.attempts, 1), "started_at": step.started_at or now}
        changes[name] = values

    checkout_values: dict[str, Any] = {"last_event": _last_event(event)}
    if checkout.status == CheckoutStatus.pending:
        checkout_values["status"] = CheckoutStatus.running

    if event.type == PLACED:
        move(plan[0], StepStatus.running)
        return Transition(checkout_values, changes)

    name: str = event.data["step"]
    position = plan.index(name)
    is_first, is_last = position == 0, position == len(plan) - 1
    if event.type in (SUCCEEDED, SKIPPED):
        result = event.data.get("result")
        move(
            name,
            StepStatus.succeeded if event.type == SUCCEEDED else StepStatus.skipped,
            finished_at=now,
            result=json.dumps(result) if result is not None else None,
        )
        if is_last:
            checkout_values["status"] = CheckoutStatus.completed
        else:
            move(plan[position + 1], StepStatus.running)
    elif event.type == REFUSED:
        error = event.data.get("error") or {}
        move(
            name,
            StepStatus.failed,
            finished_at=now,
            error=json.dumps(error),
            http_status=error.get("http_status"),
        )
        checkout_values["error"] = json.dumps({"step": name, **error})
        if is_first:
            checkout_values["status"] = CheckoutStatus.failed
    elif event.type == COMPENSATED:
        summary = json.dumps(event.data.get("result"))
        if event.data.get("undid"):
            move(name, StepStatus.compensated, compensated_at=now, result=summary)
        elif steps[name].status != StepStatus.skipped:
            # Its effect never landed, and the void means it never will: the step simply failed.
            changes[name] = {"status": StepStatus.failed, "result": summary}
            changes[name]["finished_at"] = steps[name].finished_at or now
        if is_first:
            checkout_values["status"] = CheckoutStatus.failed
    if checkout_values.get("status") == CheckoutStatus.failed:
        # As the saga does: steps never reached are skipped.
        for other in plan:
            if steps[other].status == StepStatus.pending and other not in changes:
                changes[other] = {"status": StepStatus.skipped, "finished_at": now}
    return Transition(checkout_values, changes)


_OUTCOME_OF: dict[str, str] = {
    StepStatus.succeeded: "succeeded",
    StepStatus.failed: "refused",
    StepStatus.compensated: "compensated",
}


class Feed:
    """Writes the checkout events of a queue into the journal, and counts them as the saga's
    metrics count an orchestrated checkout (``checkout_finished_total``, ``step_duration_seconds``,
    ``step_compensations_total``)."""

    def __init__(
        self, journal: Journal, ended: Callable[[uuid.UUID], None], metrics: SagaMetrics
    ) -> None:
        self.journal = journal
        self.ended = ended
        self.metrics = metrics

    @property
    def reactions(self) -> dict[str, Reaction]:
        return dict.fromkeys(EVENT_TYPES, self.on_event)

    async def on_event(self, event: Event) -> Work | None:
        """Write ``event`` to the journal, then let the reactor record the message as applied.

        The journal's write is idempotent on its own (statuses only move forward), so it comes
        first, in a transaction of its own, as the email service's delivery does.
        """
        checkout_id = uuid.UUID(event.checkout_id)
        loaded = await self.journal.load(checkout_id)
        if loaded is None:
            log.warning("feed: %s for unknown checkout %s ignored", event.type, checkout_id)
            return None
        checkout, steps = loaded
        if checkout.coordination != CHOREOGRAPHY:
            log.warning("feed: %s for orchestrated checkout %s ignored", event.type, checkout_id)
            return None
        transition = transition_for(event, checkout, {step.name: step for step in steps})
        if transition:
            try:
                await self.journal.commit(checkout_id, checkout.lease_token, transition)
            except LeaseLostError:
                pass  # ended meanwhile (the terminal write ends the lease): nothing to write
            else:
                self._count(transition, {step.name: step for step in steps})
                if transition.checkout.get("status") in TERMINAL_STATUSES:
                    self.ended(checkout_id)
        return _recorded

    def _count(self, transition: Transition, steps: dict[str, StepRecord]) -> None:
        metrics = self.metrics
        status = transition.checkout.get("status")
        if status in TERMINAL_STATUSES:
            metrics.child(metrics.checkouts, str(status)).inc()
        for name, values in transition.steps.items():
            outcome = _OUTCOME_OF.get(values.get("status", StepStatus.pending))
            if outcome is None:
                continue
            started = values.get("started_at") or steps[name].started_at
            ended = values.get("compensated_at") or values.get("finished_at")
            if started is not None and ended is not None:
                seconds = max(0.0, (ended - started).total_seconds())
                metrics.child(metrics.step_duration, name, outcome).observe(seconds)
            if outcome == "compensated":
                metrics.child(metrics.compensations, name).inc()


async def _recorded(_: Transaction) -> list[Event]:
    """The reactor's transaction for an event the feed wrote: only its inbox row."""
    return []
