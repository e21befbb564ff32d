"""The read side of the orchestrator: the API view of checkouts and keyset-paginated lists."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlmodel import col

from orchestrator.errors import InvalidCursorError
from orchestrator.models import Checkout, Step
from orchestrator.schemas import TERMINAL_STATUSES, CheckoutPublic, StepPublic, Waiting
from orchestrator.store import Journal


def _loads(raw: str | None) -> Any:
    return json.loads(raw) if raw else None


def _when(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None


def waiting_of(checkout: Checkout, steps: list[Step]) -> Waiting | None:
    """Why an unfinished checkout is where it is: for operators hunting stuck checkouts."""
    if checkout.status in TERMINAL_STATUSES:
        return None
    now = time.time()
    current = next(
        (s for s in sorted(steps, key=lambda s: s.position) if s.status in ("running", "pending")),
        None,
    )
    last_error = _loads(current.error) if current else None
    if checkout.cancel_requested:
        reason = "cancelling: compensating completed steps"
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
    return Waiting(
        reason=reason,
        step=current.name if current else None,
        attempts=current.attempts if current else 0,
        last_error=last_error if isinstance(last_error, dict) else None,
        next_attempt_at=_when(checkout.next_attempt_at),
        deadline_at=_when(checkout.deadline_at),
        lease_owner=checkout.lease_owner,
        lease_expires_at=_when(checkout.lease_expires_at),
        cancel_requested=checkout.cancel_requested,
        cancellable=not checkout.past_pivot and not checkout.cancel_requested,
    )


def to_public(checkout: Checkout, steps: list[Step]) -> CheckoutPublic:
    """The API view of a checkout and its steps."""
    return CheckoutPublic.model_validate(
        {
            "id": checkout.id,
            "status": checkout.status,
            "customer": json.loads(checkout.customer),
            "items": json.loads(checkout.items),
            "currency": checkout.currency,
            "total": f"{checkout.total_cents // 100}.{checkout.total_cents % 100:02d}",
            # A failed checkout credits nothing in the end (any credit was reversed).
            "points": 0 if checkout.status == "failed" else checkout.points,
            "steps": [
                StepPublic(
                    name=s.name,
                    status=s.status,
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
            "created_at": checkout.created_at,
            "updated_at": checkout.updated_at,
        }
    )


async def read_checkout(journal: Journal, checkout_id: uuid.UUID) -> CheckoutPublic | None:
    """The API view of one checkout."""
    loaded = await journal.load(checkout_id)
    return to_public(*loaded) if loaded else None


async def list_checkouts(
    journal: Journal, *, status: str | None, customer_id: str | None, limit: int, cursor: str | None
) -> tuple[list[CheckoutPublic], str | None]:
    """Checkouts newest first, by keyset on (created_at, id), so no row is skipped or repeated."""
    query = select(Checkout)
    if status:
        query = query.where(col(Checkout.status) == status)
    if customer_id:
        query = query.where(col(Checkout.customer_id) == customer_id)
    if cursor:
        after_at, after_id = decode_cursor(cursor)
        query = query.where(
            or_(
                col(Checkout.created_at) < after_at,
                and_(col(Checkout.created_at) == after_at, col(Checkout.id) < after_id),
            )
        )
    query = query.order_by(col(Checkout.created_at).desc(), col(Checkout.id).desc()).limit(
        limit + 1
    )
    async with journal.session() as session:
        checkouts = list((await session.execute(query)).scalars().all())
        more = len(checkouts) > limit
        checkouts = checkouts[:limit]
        by_checkout: dict[uuid.UUID, list[Step]] = {c.id: [] for c in checkouts}
        if checkouts:
            steps = await session.execute(
                select(Step).where(col(Step.checkout_id).in_(by_checkout))
            )
            for step in steps.scalars():
                by_checkout[step.checkout_id].append(step)
    items = [to_public(c, by_checkout[c.id]) for c in checkouts]
    next_cursor = encode_cursor(checkouts[-1].created_at, checkouts[-1].id) if more else None
    return items, next_cursor


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
