"""Every query of the email service. Functions take the session, then keyword-only arguments.

One message per (checkout, template) is guaranteed by a unique constraint, so a retried or
concurrent request finds the existing row instead of creating a second. Delivery is claimed with
one conditional ``UPDATE`` (a lease in ``locked_until``): of two concurrent requests only one
delivers, and a lease left by a crashed process expires on its own.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from email_service.errors import EmailNotFoundError
from email_service.models import ERROR_MAX, IdempotencyRecord, OutboxMessage, utcnow
from email_service.schemas import EmailDetail, EmailPublic
from servicekit import idempotency
from servicekit.idempotency import StoredResponse

DELIVERED = frozenset({"sent", "logged"})
UNDELIVERED = ("pending", "failed")


def public(message: OutboxMessage) -> EmailPublic:
    """A message as lists show it."""
    return EmailPublic.model_validate(message, from_attributes=True)


def detail(message: OutboxMessage) -> EmailDetail:
    """A message with its body."""
    return EmailDetail.model_validate(message, from_attributes=True)


def find_replay(session: Session, *, scope: str, key: str, digest: str) -> StoredResponse | None:
    """The recorded answer to ``key``, if any; 422 if the key came with another body."""
    return idempotency.find_replay(session, IdempotencyRecord, scope=scope, key=key, digest=digest)


def find_message(session: Session, *, checkout_id: str, template: str) -> OutboxMessage | None:
    """The message of a checkout for a template, if there is one."""
    query = select(OutboxMessage).where(
        OutboxMessage.checkout_id == checkout_id, OutboxMessage.template == template
    )
    return session.exec(query).first()


def add_message(
    session: Session, *, to: str, template: str, checkout_id: str, subject: str, body: str
) -> OutboxMessage:
    """Record a pending message and commit; if a concurrent twin won, return the twin's."""
    message = OutboxMessage(
        to=to, template=template, checkout_id=checkout_id, subject=subject, body=body
    )
    session.add(message)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        twin = find_message(session, checkout_id=checkout_id, template=template)
        if twin is None:
            raise
        return twin
    return message


def claim(session: Session, *, message_id: uuid.UUID, lease_s: float) -> bool:
    """Take the delivery lease of an undelivered message and count the attempt; False if taken."""
    now = utcnow()
    taken = session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.id) == message_id)
        .where(col(OutboxMessage.status).in_(UNDELIVERED))
        .where(
            or_(col(OutboxMessage.locked_until).is_(None), col(OutboxMessage.locked_until) < now)
        )
        .values(
            attempts=col(OutboxMessage.attempts) + 1,
            locked_until=now + timedelta(seconds=lease_s),
        )
    )
    return bool(taken.rowcount == 1)  # type: ignore[attr-defined]


def mark_delivered(session: Session, *, message_id: uuid.UUID, status: str) -> None:
    """Record a successful delivery ("sent" or "logged") and free the lease."""
    session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.id) == message_id)
        .values(status=status, sent_at=utcnow(), last_error=None, locked_until=None)
    )


def mark_failed(session: Session, *, message_id: uuid.UUID, error: str) -> None:
    """Record a failed attempt and free the lease, so the next request retries at once."""
    session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.id) == message_id)
        .where(col(OutboxMessage.status).in_(UNDELIVERED))
        .values(status="failed", last_error=error[:ERROR_MAX], locked_until=None)
    )


def read_message(session: Session, *, message_id: uuid.UUID) -> OutboxMessage:
    """One message by id."""
    message = session.get(OutboxMessage, message_id, populate_existing=True)
    if message is None:
        raise EmailNotFoundError(f"No email has the id {message_id}.")
    return message


def list_messages(
    session: Session, *, to: str | None, checkout_id: str | None, limit: int
) -> list[EmailPublic]:
    """Messages to an address and/or of a checkout, newest first."""
    query = select(OutboxMessage)
    if to is not None:
        query = query.where(OutboxMessage.to == to)
    if checkout_id is not None:
        query = query.where(OutboxMessage.checkout_id == checkout_id)
    query = query.order_by(col(OutboxMessage.created_at).desc(), col(OutboxMessage.id).desc())
    return [public(message) for message in session.exec(query.limit(limit)).all()]
