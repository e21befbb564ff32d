"""The relay: publishes what the outbox holds, oldest first, then deletes what was confirmed.

It wakes when a transaction of this process enqueued events (``wake``), and otherwise every
``poll_s`` (events another process enqueued, or rows a dead relay had claimed). A crash between
the broker's confirm and the delete publishes a row twice; consumers' inboxes skip the twin.
"""

from __future__ import annotations

import asyncio
import logging

from servicekit.db.database import Database
from servicekit.events.broker import Broker
from servicekit.events.store import EventStore
from servicekit.events.telemetry import EventTelemetry

log = logging.getLogger(__name__)


class Relay:
    """Moves events from one database's outbox to the broker."""

    def __init__(
        self,
        database: Database,
        store: EventStore,
        broker: Broker,
        telemetry: EventTelemetry,
        *,
        batch: int = 200,
        poll_s: float = 0.5,
        hold_s: float = 15.0,
    ) -> None:
        self.database = database
        self.store = store
        self.broker = broker
        self.batch = batch
        self.poll_s = poll_s
        self.hold_s = hold_s
        self.telemetry = telemetry
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Publish soon: a transaction just committed events."""
        self._wake.set()

    async def publish_once(self) -> int:
        """Publish one batch; returns how many events it held."""
        rows = await self.store.claim(self.database, limit=self.batch, hold_s=self.hold_s)
        if not rows:
            return 0
        seqs = [row[0] for row in rows]
        try:
            # Confirms are awaited together: the broker confirms a pipeline of messages at once.
            await asyncio.gather(
                *(
                    self.broker.publish(key, body, message_id=message_id)
                    for _, message_id, key, body in rows
                )
            )
        except Exception:
            # Some may have reached the broker: publishing them again is what the inboxes are for.
            await self.store.release(self.database, seqs)
            raise
        await self.store.drop(self.database, seqs)
        for _, _, key, _ in rows:
            self.telemetry.sent(key)
        return len(rows)

    async def run(self) -> None:
        """Publish until cancelled; a broker or database error is logged and retried."""
        while True:
            try:
                if await self.publish_once() == self.batch:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("relay: publishing failed; retrying", exc_info=True)
                await asyncio.sleep(self.poll_s)
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except TimeoutError:
                pass
            self._wake.clear()
