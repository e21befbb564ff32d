"""The ``POST /emails`` workflow: record first, then deliver, then remember the answer.

Each database step is one transaction of the kit's ``Database`` (committed when it returns).

1. Replay a recorded answer (Idempotency-Key); else find the checkout's message for the template
   and take its delivery lease, or render it and record it as ``pending`` with the lease already
   taken (committed before any delivery, so a crash never loses it).
2. On the event loop: deliver it (SMTP or the log), bounded by the mailer's timeout.
3. Record ``sent``/``logged``, then, with a key, the answer to replay; or record ``failed`` and
   answer 503 with Retry-After, so the caller retries.

The idempotency record is written only once the message is delivered, so a replay always shows a
delivered message. A retry after a failure finds the same row (natural key) and re-attempts it; a
message already delivered is never delivered again. 201 means this request delivered the message,
200 that an earlier one had.
"""

from __future__ import annotations

import math
import uuid
from functools import partial

from email_service import messages
from email_service.delivery import DeliveryError, Mailer, Outgoing
from email_service.errors import (
    DeliveryFailedError,
    DeliveryInProgressError,
    EmailNotFoundError,
    RecipientConflictError,
)
from email_service.messages import DELIVERED, Message
from email_service.models import utcnow
from email_service.rendering import render
from email_service.schemas import EmailCreate
from servicekit.db.database import Database
from servicekit.db.statements import Transaction
from servicekit.idempotency import StoredResponse, apply_once, fingerprint, recorded_answer

SCOPE = "POST /emails"
RETRY_AFTER_S = 5
# The lease outlives the longest delivery, so it only expires for an attempt that died.
LEASE_MARGIN_S = 10.0


def _outgoing(message: Message) -> Outgoing:
    return Outgoing(id=message.id, to=message.to, subject=message.subject, body=message.body)


async def _current(tx: Transaction, message_id: uuid.UUID) -> Message:
    message = await messages.get_message(tx, message_id=message_id)
    if message is None:
        raise EmailNotFoundError(f"No email has the id {message_id}.")
    return message


async def _respond(
    tx: Transaction,
    message_id: uuid.UUID,
    *,
    status_code: int,
    key: str | None,
    digest: str,
    look_first: bool = True,
) -> StoredResponse:
    """Answer with the message as it now stands, recording the answer under ``key``."""

    async def action() -> tuple[int, object]:
        return status_code, messages.public(await _current(tx, message_id)).model_dump(mode="json")

    return await apply_once(
        tx, scope=SCOPE, key=key, digest=digest, action=action, look_first=look_first
    )


async def _prepare(
    tx: Transaction, request: EmailCreate, *, key: str | None, digest: str, lease_s: float
) -> StoredResponse | Outgoing:
    """A replay or final answer, or the recorded message this request must now deliver."""
    if key is not None:
        replay = await recorded_answer(tx, scope=SCOPE, key=key, digest=digest)
        if replay is not None:
            await tx.rollback()
            return replay
    message = await messages.find_message(
        tx, checkout_id=request.checkout_id, template=request.template
    )
    if message is None:
        rendered = render(
            request.template, checkout_id=request.checkout_id, context=request.context
        )
        # Recorded and claimed for this delivery in one commit, before any delivery: no
        # transaction (or SQLite write lock) spans the SMTP call, and a crash never loses it.
        added = await messages.add_message(
            tx,
            to=request.to,
            template=request.template,
            checkout_id=request.checkout_id,
            subject=rendered.subject,
            body=rendered.body,
            lease_s=lease_s,
        )
        if added is not None:
            return _outgoing(added)
        # A concurrent twin recorded it first: carry on with the twin's row.
        message = await messages.find_message(
            tx, checkout_id=request.checkout_id, template=request.template
        )
        if message is None:
            raise RuntimeError("recording an email failed, yet its checkout has none")
    message_id = message.id
    if message.to != request.to:
        await tx.rollback()
        raise RecipientConflictError(
            f"Checkout {request.checkout_id} already has a {request.template} email "
            f"to another address ({message_id}).",
            email_id=str(message_id),
        )
    if message.status not in DELIVERED:
        if await messages.claim(tx, message_id=message_id, lease_s=lease_s):
            # Committed before delivery: no transaction (or SQLite write lock) spans the SMTP call.
            return _outgoing(message)
        await tx.rollback()
        message = await _current(tx, message_id)
        if message.status not in DELIVERED:
            locked_until = message.locked_until or utcnow()
            remaining = math.ceil((locked_until - utcnow()).total_seconds())
            wait = max(1, min(remaining, RETRY_AFTER_S))
            await tx.rollback()
            raise DeliveryInProgressError(
                f"Email {message_id} is being delivered by another request; retry shortly.",
                headers={"Retry-After": str(wait)},
                email_id=str(message_id),
            )
    await tx.rollback()
    return await _respond(tx, message_id, status_code=200, key=key, digest=digest)


async def submit(
    database: Database, mailer: Mailer, request: EmailCreate, *, key: str | None
) -> StoredResponse:
    """Record, deliver and answer one ``POST /emails``."""
    digest = fingerprint(request.model_dump(mode="json"))
    lease_s = mailer.timeout_s + LEASE_MARGIN_S
    prepared = await database.run(
        partial(_prepare, request=request, key=key, digest=digest, lease_s=lease_s)
    )
    if isinstance(prepared, StoredResponse):
        return prepared
    try:
        await mailer.deliver(prepared)
    except DeliveryError as exc:
        await database.run(partial(messages.mark_failed, message_id=prepared.id, error=str(exc)))
        raise DeliveryFailedError(
            f"The mail server did not accept email {prepared.id} ({exc}); it is kept and "
            "will be delivered when this request is retried.",
            headers={"Retry-After": str(RETRY_AFTER_S)},
            email_id=str(prepared.id),
        ) from exc
    # Two transactions: the delivery is recorded whatever becomes of the answer's record. The
    # key was looked up before delivering, so the answer is recorded without looking again (a
    # twin's record, should one have appeared since, is found by the conflict and replayed).
    await database.run(
        partial(messages.mark_delivered, message_id=prepared.id, status=mailer.delivered_status)
    )
    return await database.run(
        partial(
            _respond,
            message_id=prepared.id,
            status_code=201,
            key=key,
            digest=digest,
            look_first=False,
        )
    )
