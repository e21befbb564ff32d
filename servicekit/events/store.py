"""The outbox's and inbox's SQL, written once for SQLite and PostgreSQL.

Several relays may share a PostgreSQL database (replicas of one service): each claims a batch
with ``FOR UPDATE SKIP LOCKED`` and a claim that expires, so two never publish one row at once
and a relay that died mid-batch leaves its rows to the next. SQLite has one relay per database.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from servicekit.db.database import Database
from servicekit.db.statements import SQL, Transaction
from servicekit.events.envelope import Event

_ENQUEUE = SQL(
    "INSERT INTO event_outbox (message_id, routing_key, body, created_at, claimed_until)"
    " VALUES (:message_id, :routing_key, :body, :created_at, NULL)"
)
_PENDING = (
    "SELECT seq FROM event_outbox WHERE claimed_until IS NULL OR claimed_until < :now"
    " ORDER BY seq LIMIT :limit"
)
_CLAIM = SQL(
    f"UPDATE event_outbox SET claimed_until = :until WHERE seq IN ({_PENDING})"
    " RETURNING seq, message_id, routing_key, body",
    postgres=(
        "UPDATE event_outbox SET claimed_until = :until"
        f" WHERE seq IN ({_PENDING} FOR UPDATE SKIP LOCKED)"
        " RETURNING seq, message_id, routing_key, body"
    ),
)
_DROP = SQL("DELETE FROM event_outbox WHERE seq = :seq")
_COUNT = SQL("SELECT count(*) FROM event_outbox")
_SEEN = SQL("SELECT 1 FROM event_inbox WHERE message_id = :message_id")
_RECORD = SQL(
    "INSERT INTO event_inbox (message_id, event_type, received_at)"
    " VALUES (:message_id, :event_type, :received_at) ON CONFLICT (message_id) DO NOTHING"
)


async def enqueue(tx: Transaction, events: Sequence[Event]) -> None:
    """Write ``events`` in ``tx``: they are published if and only if ``tx`` commits."""
    now = datetime.now(UTC)
    for event in events:
        await tx.execute(
            _ENQUEUE,
            {
                "message_id": event.message_id,
                "routing_key": event.type,
                "body": event.to_json(),
                "created_at": now,
            },
        )


Claimed = tuple[int, str, str, str]  # seq, message id, routing key, body


async def claim(database: Database, *, limit: int, hold_s: float) -> list[Claimed]:
    """Take up to ``limit`` unpublished events for ``hold_s`` seconds, oldest first."""
    now = time.time()
    params = {"now": now, "until": now + hold_s, "limit": limit}
    rows = (await database.execute(_CLAIM, params)).rows
    return sorted((int(seq), message_id, key, body) for seq, message_id, key, body in rows)


async def drop(database: Database, seqs: Sequence[int]) -> None:
    """Delete what the broker confirmed."""

    async def work(tx: Transaction) -> None:
        await tx.execute_many(_DROP, [{"seq": seq} for seq in seqs])

    await database.run(work)


async def waiting(database: Database) -> int:
    """How many events wait in the outbox."""
    row = (await database.execute(_COUNT)).first()
    return int(row[0]) if row else 0


async def seen(database: Database, message_id: str) -> bool:
    """Whether this database already applied the message."""
    return (await database.execute(_SEEN, {"message_id": message_id})).first() is not None


async def record(tx: Transaction, event: Event) -> bool:
    """Record in ``tx`` that ``event`` is applied; False if it already was (then roll back)."""
    params = {"message_id": event.message_id, "event_type": event.type}
    return await tx.execute(_RECORD, params | {"received_at": datetime.now(UTC)}) == 1
