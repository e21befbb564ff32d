"""The outbox's rows as ``POST /emails`` writes them: plain SQL on one transaction.

The hot path of the saga, so it skips the ORM (see ``servicekit.sql``); the reads of the API stay
in ``store``. Functions take the transaction, then keyword-only arguments, and leave committing
to the caller (``outbox``).

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

from email_service.models import ERROR_MAX, utcnow
from servicekit.sql import SQL, Transaction

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


def _message(tx: Transaction, row: Any) -> Message:
    return Message(
        id=tx.uuid_of(row[0]),
        to=row[1],
        template=row[2],
        checkout_id=row[3],
        subject=row[4],
        body=row[5],
        status=row[6],
        attempts=row[7],
        last_error=row[8],
        locked_until=tx.optional_timestamp_of(row[9]),
        created_at=tx.timestamp_of(row[10]),
        sent_at=tx.optional_timestamp_of(row[11]),
    )


def find_message(tx: Transaction, *, checkout_id: str, template: str) -> Message | None:
    """The message of a checkout for a template, if there is one."""
    row = tx.one(_BY_KEY, {"checkout_id": checkout_id, "template": template})
    return None if row is None else _message(tx, row)


def get_message(tx: Transaction, *, message_id: uuid.UUID) -> Message | None:
    """One message by id, as it now stands."""
    row = tx.one(_BY_ID, {"id": tx.uuid(message_id)})
    return None if row is None else _message(tx, row)


def add_message(
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
        "id": tx.uuid(message.id),
        "to": to,
        "template": template,
        "checkout_id": checkout_id,
        "subject": subject,
        "body": body,
        "attempts": message.attempts,
        "locked_until": tx.timestamp(until),
        "created_at": tx.timestamp(now),
    }
    return message if tx.rowcount(_ADD, values) == 1 else None


def claim(tx: Transaction, *, message_id: uuid.UUID, lease_s: float) -> bool:
    """Take the delivery lease of an undelivered message and count the attempt; False if taken."""
    now = utcnow()
    values = {
        "id": tx.uuid(message_id),
        "now": tx.timestamp(now),
        "until": tx.timestamp(now + timedelta(seconds=lease_s)),
    }
    return tx.rowcount(_CLAIM, values) == 1


def mark_delivered(tx: Transaction, *, message_id: uuid.UUID, status: str) -> None:
    """Record a successful delivery ("sent" or "logged") and free the lease."""
    values = {"id": tx.uuid(message_id), "status": status, "now": tx.timestamp(utcnow())}
    tx.execute(_DELIVERED, values)


def mark_failed(tx: Transaction, *, message_id: uuid.UUID, error: str) -> None:
    """Record a failed attempt and free the lease, so the next request retries at once."""
    tx.execute(_FAILED, {"id": tx.uuid(message_id), "error": error[:ERROR_MAX]})
