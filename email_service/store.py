"""The email service's reads. Functions take the session, then keyword-only arguments.

What ``POST /emails`` writes (record, claim, mark delivered or failed) is plain SQL in
``messages``, which says how a message stays one per checkout and template and is delivered by
one request at a time.
"""

from __future__ import annotations

import uuid

from sqlmodel import Session, col, select

from email_service.errors import EmailNotFoundError
from email_service.messages import Message
from email_service.models import OutboxMessage
from email_service.schemas import EmailDetail, EmailPublic


def public(message: OutboxMessage | Message) -> EmailPublic:
    """A message as lists show it."""
    return EmailPublic.model_validate(message, from_attributes=True)


def detail(message: OutboxMessage) -> EmailDetail:
    """A message with its body."""
    return EmailDetail.model_validate(message, from_attributes=True)


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
