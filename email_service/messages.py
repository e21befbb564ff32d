"""The outbox's rows as ``POST /emails`` writes them: plain SQL on one transaction.

Every statement on the ``email_message`` table, reads included, in plain SQL on the kit's
``Database``; ``Message`` is its row (``models.OutboxMessage`` is the schema). The writes take the
transaction, then keyword-only arguments; the database that runs it commits it (``outbox``).

One message per (checkout, template) is guaranteed by a unique constraint, so a retried or
concurrent request finds the existing row instead of creating a second. Delivery is claimed with
one conditional ``UPDATE`` (a lease in ``locked_until``): of two concurrent requests only one
delivers, and a lease left by a crashed process expires on its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from email_service.errors import EmailNotFoundError
from email_service.models import ERROR_MAX, utcnow
from email_service.schemas import EmailDetail, EmailPublic
from servicekit.db.database import Database
from servicekit.db.statements import SQL, Transaction
from servicekit.db.values import optional_timestamp_of, timestamp_of, uuid_of

DELIVERED = frozenset({"sent", "logged"})

_COLUMNS = (
    'id, "to", template, checkout_id, subject, body, status, attempts, last_error, locked_until,'
    " created_at, sent_at"
)
_BY_KEY = SQL(
    f"SELECT {_COLUMNS} FROM email_message WHERE checkout_id = :checkout_id"
    " AND template = :template"
)
_BY_ID = SQL(f"SELECT {_COLUMNS} FROM email_message WHERE id = :id")
_ADD = SQL(
    f"INSERT INTO email_message ({_COLUMNS}) VALUES (:id, :to, :template, :checkout_id,"
    " :subject, :body, 'pending', :attempts, NULL, :locked_until, :created_at, NULL)"
    " ON CONFLICT (checkout_id, template) DO NOTHING"
)
_CLAIM = SQL(
    "UPDATE email_message SET attempts = attempts + 1, locked_until = :until"
    " WHERE id = :id AND status IN ('pending', 'failed')"
    " AND (locked_until IS NULL OR locked_until < :now)"
)
_DELIVERED = SQL(
    "UPDATE email_message SET status = :status, sent_at = :now, last_error = NULL,"
    " locked_until = NULL WHERE id = :id"
)
_FAILED = SQL(
    "UPDATE email_message SET status = 'failed', last_error = :error, locked_until = NULL"
    " WHERE id = :id AND status IN ('pending', 'failed')"
)


@dataclass(frozen=True)
class Message:
    """One row of the outbox (the fields of ``models.OutboxMessage``)."""

    id: uuid.UUID
    to: str
    template: str
    checkout_id: str
    subject: str
    body: str
    status: str
    attempts: int
    last_error: str | None
    locked_until: datetime | None
    created_at: datetime
    sent_at: datetime | None


def _message(row: Any) -> Message:
    return Message(
        id=uuid_of(row[0]),
        to=row[1],
        template=row[2],
        checkout_id=row[3],
        subject=row[4],
        body=row[5],
        status=row[6],
        attempts=row[7],
        last_error=row[8],
        locked_until=optional_timestamp_of(row[9]),
        created_at=timestamp_of(row[10]),
        sent_at=optional_timestamp_of(row[11]),
    )


async def find_message(tx: Transaction, *, checkout_id: str, template: str) -> Message | None:
    """The message of a checkout for a template, if there is one."""
    row = await tx.one(_BY_KEY, {"checkout_id": checkout_id, "template": template})
    return None if row is None else _message(row)


async def get_message(tx: Transaction, *, message_id: uuid.UUID) -> Message | None:
    """One message by id, as it now stands."""
    row = await tx.one(_BY_ID, {"id": message_id})
    return None if row is None else _message(row)


async def add_message(
    tx: Transaction,
    *,
    to: str,
    template: str,
    checkout_id: str,
    subject: str,
    body: str,
    lease_s: float | None = None,
) -> Message | None:
    """Record a pending message; None if the checkout already has one for the template.

    With ``lease_s`` the message is recorded already claimed for delivery by the caller (one
    attempt counted, leased for ``lease_s``), as ``claim`` would leave it.
    """
    now = utcnow()
    until = None if lease_s is None else now + timedelta(seconds=lease_s)
    message = Message(
        id=uuid.uuid4(),
        to=to,
        template=template,
        checkout_id=checkout_id,
        subject=subject,
        body=body,
        status="pending",
        attempts=0 if lease_s is None else 1,
        last_error=None,
        locked_until=until,
        created_at=now,
        sent_at=None,
    )
    values = {
        "id": message.id,
        "to": to,
        "template": template,
        "checkout_id": checkout_id,
        "subject": subject,
        "body": body,
        "attempts": message.attempts,
        "locked_until": until,
        "created_at": now,
    }
    return message if await tx.execute(_ADD, values) == 1 else None


async def claim(tx: Transaction, *, message_id: uuid.UUID, lease_s: float) -> bool:
    """Take the delivery lease of an undelivered message and count the attempt; False if taken."""
    now = utcnow()
    values = {
        "id": message_id,
        "now": now,
        "until": now + timedelta(seconds=lease_s),
    }
    return await tx.execute(_CLAIM, values) == 1


async def mark_delivered(tx: Transaction, *, message_id: uuid.UUID, status: str) -> None:
    """Record a successful delivery ("sent" or "logged") and free the lease."""
    values = {"id": message_id, "status": status, "now": utcnow()}
    await tx.execute(_DELIVERED, values)


async def mark_failed(tx: Transaction, *, message_id: uuid.UUID, error: str) -> None:
    """Record a failed attempt and free the lease, so the next request retries at once."""
    await tx.execute(_FAILED, {"id": message_id, "error": error[:ERROR_MAX]})


# --- reads of the API ----------------------------------------------------------------------


def public(message: Message) -> EmailPublic:
    """A message as lists show it."""
    return EmailPublic.model_validate(message, from_attributes=True)


def detail(message: Message) -> EmailDetail:
    """A message with its body."""
    return EmailDetail.model_validate(message, from_attributes=True)


async def read_message(database: Database, *, message_id: uuid.UUID) -> Message:
    """One message by id."""
    row = (await database.execute(_BY_ID, {"id": message_id})).first()
    if row is None:
        raise EmailNotFoundError(f"No email has the id {message_id}.")
    return _message(row)


async def list_messages(
    database: Database, *, to: str | None, checkout_id: str | None, limit: int
) -> list[EmailPublic]:
    """Messages to an address and/or of a checkout, newest first."""
    where, params = [], {"limit": limit, "to": to, "checkout_id": checkout_id}
    if to is not None:
        where.append('"to" = :to')
    if checkout_id is not None:
        where.append("checkout_id = :checkout_id")
    listing = SQL(
        f"SELECT {_COLUMNS} FROM email_message"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY created_at DESC, id DESC LIMIT :limit"
    )
    rows = (await database.execute(listing, params)).rows
    return [public(_message(row)) for row in rows]
