"""The outbox's and inbox's SQL, written once for SQLite and PostgreSQL.

Each service has its own pair of tables (``<service>_event_outbox``, ``<service>_event_inbox``),
so services that share one database (as the tests' shared-schema check does) never read each
other's: a message one service applied is not skipped by another.

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
from servicekit.events.tables import inbox_table, outbox_table

Claimed = tuple[int, str, str, str]  # seq, message id, routing key, body


class EventStore:
    """The outbox and inbox of ``service``."""

    def __init__(self, service: str) -> None:
        outbox, inbox = outbox_table(service), inbox_table(service)
        self.service = service
        self._enqueue = SQL(
            f"INSERT INTO {outbox} (message_id, routing_key, body, created_at, claimed_until)"
            " VALUES (:message_id, :routing_key, :body, :created_at, NULL)"
        )
        pending = (
            f"SELECT seq FROM {outbox} WHERE claimed_until IS NULL OR claimed_until < :now"
            " ORDER BY seq LIMIT :limit"
        )
        self._claim = SQL(
            f"UPDATE {outbox} SET claimed_until = :until WHERE seq IN ({pending})"
            " RETURNING seq, message_id, routing_key, body",
            postgres=(
                f"UPDATE {outbox} SET claimed_until = :until"
                f" WHERE seq IN ({pending} FOR UPDATE SKIP LOCKED)"
                " RETURNING seq, message_id, routing_key, body"
            ),
        )
        self._drop = SQL(f"DELETE FROM {outbox} WHERE seq = :seq")
        self._release = SQL(f"UPDATE {outbox} SET claimed_until = NULL WHERE seq = :seq")
        self._count = SQL(f"SELECT count(*) FROM {outbox}")
        self._seen = SQL(f"SELECT 1 FROM {inbox} WHERE message_id = :message_id")
        self._record = SQL(
            f"INSERT INTO {inbox} (message_id, event_type, received_at)"
            " VALUES (:message_id, :event_type, :received_at) ON CONFLICT (message_id) DO NOTHING"
        )

    async def enqueue(self, tx: Transaction, events: Sequence[Event]) -> None:
        """Write ``events`` in ``tx``: they are published if and only if ``tx`` commits."""
        now = datetime.now(UTC)
        for event in events:
            await tx.execute(
                self._enqueue,
                {
                    "message_id": event.message_id,
                    "routing_key": event.type,
                    "body": event.to_json(),
                    "created_at": now,
                },
            )

    async def claim(self, database: Database, *, limit: int, hold_s: float) -> list[Claimed]:
        """Take up to ``limit`` unpublished events for ``hold_s`` seconds, oldest first."""
        now = time.time()
        params = {"now": now, "until": now + hold_s, "limit": limit}
        rows = (await database.execute(self._claim, params)).rows
        return sorted((int(seq), message_id, key, body) for seq, message_id, key, body in rows)

    async def drop(self, database: Database, seqs: Sequence[int]) -> None:
        """Delete what the broker confirmed."""

        async def work(tx: Transaction) -> None:
            await tx.execute_many(self._drop, [{"seq": seq} for seq in seqs])

        await database.run(work)

    async def release(self, database: Database, seqs: Sequence[int]) -> None:
        """Give back a claim the broker did not confirm, so the next attempt takes it at once."""

        async def work(tx: Transaction) -> None:
            await tx.execute_many(self._release, [{"seq": seq} for seq in seqs])

        await database.run(work)

    async def waiting(self, database: Database) -> int:
        """How many events wait in the outbox."""
        row = (await database.execute(self._count)).first()
        return int(row[0]) if row else 0

    async def seen(self, database: Database, message_id: str) -> bool:
        """Whether this service already applied the message."""
        found = await database.execute(self._seen, {"message_id": message_id})
        return found.first() is not None

    async def record(self, tx: Transaction, event: Event) -> bool:
        """Record in ``tx`` that ``event`` is applied; False if it already was (then roll back)."""
        params = {"message_id": event.message_id, "event_type": event.type}
        return await tx.execute(self._record, params | {"received_at": datetime.now(UTC)}) == 1
