"""The ``POST /emails`` workflow: record first, then deliver, then remember the answer.

1. In a worker thread: replay a recorded answer (Idempotency-Key); else find the checkout's
   message for the template, or render it and record it as ``pending`` (committed before any
   delivery, so a crash never loses it); then take its delivery lease.
2. On the event loop: deliver it (SMTP or the log), bounded by the mailer's timeout.
3. In a worker thread: record ``sent``/``logged`` and, with a key, the answer to replay; or record
   ``failed`` and answer 503 with Retry-After, so the caller retries.

The idempotency record is written only once the message is delivered, so a replay always shows a
delivered message. A retry after a failure finds the same row (natural key) and re-attempts it; a
message already delivered is never delivered again. 201 means this request delivered the message,
200 that an earlier one had.
"""

from __future__ import annotations

import math
import uuid
from functools import partial

import anyio
from sqlmodel import Session

from email_service import store
from email_service.delivery import DeliveryError, Mailer, Outgoing
from email_service.errors import (
    DeliveryFailedError,
    DeliveryInProgressError,
    RecipientConflictError,
)
from email_service.models import IdempotencyRecord, utcnow
from email_service.rendering import render
from email_service.schemas import EmailCreate
from servicekit.idempotency import StoredResponse, execute_once, fingerprint

SCOPE = "POST /emails"
RETRY_AFTER_S = 5
# The lease outlives the longest delivery, so it only expires for an attempt that died.
LEASE_MARGIN_S = 10.0


def _respond(
    session: Session, message_id: uuid.UUID, *, status_code: int, key: str | None, digest: str
) -> StoredResponse:
    """Answer with the message as it now stands, recording the answer under ``key``."""

    def action() -> tuple[int, object]:
        message = store.read_message(session, message_id=message_id)
        return status_code, store.public(message).model_dump(mode="json")

    return execute_once(
        session, IdempotencyRecord, scope=SCOPE, key=key, digest=digest, action=action
    )


def _prepare(
    session: Session, request: EmailCreate, *, key: str | None, digest: str, lease_s: float
) -> StoredResponse | Outgoing:
    """A replay or final answer, or the recorded message this request must now deliver."""
    if key is not None:
        replay = store.find_replay(session, scope=SCOPE, key=key, digest=digest)
        if replay is not None:
            session.rollback()
            return replay
    message = store.find_message(
        session, checkout_id=request.checkout_id, template=request.template
    )
    if message is None:
        rendered = render(
            request.template, checkout_id=request.checkout_id, context=request.context
        )
        message = store.add_message(
            session,
            to=request.to,
            template=request.template,
            checkout_id=request.checkout_id,
            subject=rendered.subject,
            body=rendered.body,
        )
    message_id = message.id
    if message.to != request.to:
        session.rollback()
        raise RecipientConflictError(
            f"Checkout {request.checkout_id} already has a {request.template} email "
            f"to another address ({message_id}).",
            email_id=str(message_id),
        )
    if message.status not in store.DELIVERED:
        outgoing = Outgoing(
            id=message_id, to=message.to, subject=message.subject, body=message.body
        )
        if store.claim(session, message_id=message_id, lease_s=lease_s):
            # Committed before delivery: no transaction (or SQLite write lock) spans the SMTP call.
            session.commit()
            return outgoing
        session.rollback()
        message = store.read_message(session, message_id=message_id)
        if message.status not in store.DELIVERED:
            locked_until = message.locked_until or utcnow()
            remaining = math.ceil((locked_until - utcnow()).total_seconds())
            wait = max(1, min(remaining, RETRY_AFTER_S))
            session.rollback()
            raise DeliveryInProgressError(
                f"Email {message_id} is being delivered by another request; retry shortly.",
                headers={"Retry-After": str(wait)},
                email_id=str(message_id),
            )
    session.rollback()
    return _respond(session, message_id, status_code=200, key=key, digest=digest)


def _fail(session: Session, message_id: uuid.UUID, error: str) -> None:
    try:
        store.mark_failed(session, message_id=message_id, error=error)
        session.commit()
    except BaseException:
        session.rollback()
        raise


def _finish(
    session: Session, message_id: uuid.UUID, *, status: str, key: str | None, digest: str
) -> StoredResponse:
    try:
        store.mark_delivered(session, message_id=message_id, status=status)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return _respond(session, message_id, status_code=201, key=key, digest=digest)


async def submit(
    session: Session, mailer: Mailer, request: EmailCreate, *, key: str | None
) -> StoredResponse:
    """Record, deliver and answer one ``POST /emails``; database work runs in worker threads."""
    digest = fingerprint(request.model_dump(mode="json"))
    lease_s = mailer.timeout_s + LEASE_MARGIN_S
    prepared = await anyio.to_thread.run_sync(
        partial(_prepare, session, request, key=key, digest=digest, lease_s=lease_s)
    )
    if isinstance(prepared, StoredResponse):
        return prepared
    try:
        await mailer.deliver(prepared)
    except DeliveryError as exc:
        await anyio.to_thread.run_sync(partial(_fail, session, prepared.id, str(exc)))
        raise DeliveryFailedError(
            f"The mail server did not accept email {prepared.id} ({exc}); it is kept and "
            "will be delivered when this request is retried.",
            headers={"Retry-After": str(RETRY_AFTER_S)},
            email_id=str(prepared.id),
        ) from exc
    return await anyio.to_thread.run_sync(
        partial(
            _finish,
            session,
            prepared.id,
            status=mailer.delivered_status,
            key=key,
            digest=digest,
        )
    )
