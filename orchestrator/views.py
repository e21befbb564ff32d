"""The API view of checkouts (one, or keyset-paginated lists), from the journal's records."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from orchestrator.choreography.placing import CHOREOGRAPHY
from orchestrator.errors import InvalidCursorError
from orchestrator.journal import checkouts
from orchestrator.journal.journal import Journal
from orchestrator.journal.records import CheckoutRecord, StepRecord
from orchestrator.saga.plan import parse_plan
from orchestrator.schemas import CheckoutPublic, StepPublic, Waiting
from orchestrator.statuses import TERMINAL_STATUSES, UNFINISHED_STATUSES, CheckoutStatus


def _loads(raw: str | None) -> Any:
    return json.loads(raw) if raw else None


def _when(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None


def waiting_of(checkout: CheckoutRecord, steps: list[StepRecord]) -> Waiting | None:
    """Why an unfinished checkout is where it is: for operators hunting stuck checkouts."""
    if checkout.status in TERMINAL_STATUSES:
        return None
    now = time.time()
    unfinished = [
        s for s in sorted(steps, key=lambda s: s.position) if s.status in UNFINISHED_STATUSES
    ]
    # Of several steps running at once, the one with an error is the one holding things up.
    current = next((s for s in unfinished if s.error), unfinished[0] if unfinished else None)
    last_error = _loads(current.error) if current else None
    choreographed = checkout.coordination == CHOREOGRAPHY
    last_event = _loads(checkout.last_event) if choreographed else None
    stuck = choreographed and checkout.deadline_at is not None and now > checkout.deadline_at
    if choreographed:
        reason = _choreography_reason(checkout, current, last_event, stuck)
    elif checkout.cancel_requested:
        reason = "cancelling: compensating completed steps"
    elif (
        checkout.next_attempt_at
        and checkout.next_attempt_at > now
        and isinstance(last_error, dict)
        and last_error.get("retryable") is False
        and current is not None
    ):
        reason = (
            f"step {current.name} was refused; past the pivot nothing is undone, so it is "
            "tried again at next_attempt_at (or at once with /retry)"
        )
    elif checkout.next_attempt_at and checkout.next_attempt_at > now:
        reason = f"parked after transient failures of step {current.name if current else '?'}; resumes at next_attempt_at"
    elif checkout.lease_owner is None or (checkout.lease_expires_at or 0) < now:
        reason = "waiting for a replica to claim it (no live lease)"
    elif current is not None and isinstance(last_error, dict) and last_error.get("ambiguous"):
        reason = (
            f"step {current.name}: the last call's outcome is unknown (its answer was lost); "
            "repeating it with the same Idempotency-Key settles it"
        )
    elif current is not None and last_error:
        reason = (
            f"retrying step {current.name} (attempt {current.attempts}) after a transient error"
        )
    elif current is not None:
        reason = f"step {current.name} in progress"
    else:
        reason = "finishing"
    # No replica holds a choreographed checkout (its lease is the choreography's, for good).
    leased = not choreographed
    return Waiting(
        reason=reason,
        step=current.name if current else None,
        attempts=current.attempts if current else 0,
        last_error=last_error if isinstance(last_error, dict) else None,
        next_attempt_at=_when(checkout.next_attempt_at),
        deadline_at=_when(checkout.deadline_at),
        lease_owner=checkout.lease_owner if leased else None,
        lease_expires_at=_when(checkout.lease_expires_at) if leased else None,
        cancel_requested=checkout.cancel_requested,
        cancellable=leased and not checkout.past_pivot and not checkout.cancel_requested,
        stuck=stuck,
        last_event=last_event,
    )


def _choreography_reason(
    checkout: CheckoutRecord, current: StepRecord | None, last_event: Any, stuck: bool
) -> str:
    """The event a choreographed checkout waits for, or that it is stuck past its deadline,
    with the last event seen."""
    if stuck:
        seen = (
            f"{last_event['type']} from {last_event['source']} at {last_event['occurred_at']}"
            if last_event
            else "none (the placed event was not consumed)"
        )
        return f"stuck: no terminal event by its deadline; last event seen: {seen}"
    if checkout.error is not None:
        return "compensating: waiting for the steps before the failed one to undo theirs"
    if current is not None:
        return f"waiting for the {current.name} service's event (choreography)"
    return "waiting for the first event (choreography)"


def to_public(checkout: CheckoutRecord, steps: list[StepRecord]) -> CheckoutPublic:
    """The API view of a checkout and its steps."""
    plan = parse_plan(checkout.step_order)
    groups = {name: index for index, group in enumerate(plan.groups) for name in group}
    return CheckoutPublic.model_validate(
        {
            "id": checkout.id,
            "status": checkout.status,
            "customer": json.loads(checkout.customer),
            "items": json.loads(checkout.items),
            "currency": checkout.currency,
            "total": f"{checkout.total_cents // 100}.{checkout.total_cents % 100:02d}",
            # A failed checkout credits nothing in the end (any credit was reversed).
            "points": 0 if checkout.status == CheckoutStatus.failed else checkout.points,
            "steps": [
                StepPublic(
                    name=s.name,
                    status=s.status,
                    kind=plan.kind(s.name),
                    group=groups[s.name],
                    attempts=s.attempts,
                    started_at=s.started_at,
                    finished_at=s.finished_at,
                    http_status=s.http_status,
                    result=_loads(s.result),
                    error=_loads(s.error),
                    compensated_at=s.compensated_at,
                )
                for s in sorted(steps, key=lambda s: s.position)
            ],
            "error": _loads(checkout.error),
            "waiting": waiting_of(checkout, steps),
            "coordination": checkout.coordination,
            "created_at": checkout.created_at,
            "updated_at": checkout.updated_at,
        }
    )


async def read_checkout(journal: Journal, checkout_id: uuid.UUID) -> CheckoutPublic | None:
    """The API view of one checkout."""
    loaded = await journal.load(checkout_id)
    return to_public(*loaded) if loaded else None


async def list_checkouts(
    journal: Journal,
    *,
    status: str | None,
    customer_id: str | None,
    limit: int,
    cursor: str | None,
    coordination: str | None = None,
) -> tuple[list[CheckoutPublic], str | None]:
    """Checkouts newest first, by keyset on (created_at, id), so no row is skipped or repeated."""
    after = decode_cursor(cursor) if cursor else None
    listed, more = await checkouts.page(
        journal.database,
        status=status,
        customer_id=customer_id,
        coordination=coordination,
        after=after,
        limit=limit,
    )
    items = [to_public(checkout, steps) for checkout, steps in listed]
    last = listed[-1][0] if more else None
    return items, encode_cursor(last.created_at, last.id) if last is not None else None


def encode_cursor(created_at: datetime, checkout_id: uuid.UUID) -> str:
    """An opaque cursor naming the last row of a page."""
    raw = json.dumps([created_at.isoformat(), str(checkout_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) a cursor names; ``InvalidCursorError`` if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, checkout_id = json.loads(raw)
        parsed = datetime.fromisoformat(created_at)
        if parsed.tzinfo is None:
            raise ValueError("naive")
        return parsed, uuid.UUID(checkout_id)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise InvalidCursorError() from None
