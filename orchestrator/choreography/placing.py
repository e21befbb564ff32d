"""Placing a choreographed checkout: the checkout and its ``checkout.placed`` event, one commit.

The checkout is leased to ``CHOREOGRAPHY`` for good: the events drive it, never a replica, so the
supervisor's recovery passes it by, and the journal's feed writes with that lease's fence.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from orchestrator.journal.journal import Journal
from orchestrator.journal.records import CheckoutRecord, Loaded
from orchestrator.statuses import TERMINAL_STATUSES
from servicekit.db.database import Database
from servicekit.db.statements import Transaction
from servicekit.events.envelope import Event, current_traceparent
from servicekit.events.relay import Relay
from servicekit.events.saga import PLACED
from servicekit.events.store import EventStore

CHOREOGRAPHY = "choreography"
# The lease of a choreographed checkout lasts a century: nobody is meant to take it over.
FOREVER_S = 100 * 365 * 24 * 3600.0
# How often a waiting request looks at the journal: another replica's feed may end the checkout.
POLL_S = 0.25


def journal_of(database: Database) -> Journal:
    """The journal as the choreography writes it: under the choreography's lease."""
    return Journal(database, owner=CHOREOGRAPHY, lease_ttl_s=FOREVER_S)


def placed_event(checkout: CheckoutRecord, plan: list[str]) -> Event:
    """What the services learn of a new checkout: the plan (step order) and the order."""
    order: dict[str, Any] = {
        "customer": json.loads(checkout.customer),
        "items": json.loads(checkout.items),
        "currency": checkout.currency,
        "total": f"{checkout.total_cents // 100}.{checkout.total_cents % 100:02d}",
        "points": checkout.points,
    }
    return Event(
        type=PLACED,
        checkout_id=str(checkout.id),
        source="orchestrator",
        data={"plan": plan, "order": order},
        traceparent=current_traceparent(),
    )


class Placing:
    """Records choreographed checkouts and lets requests wait for their end."""

    def __init__(self, database: Database) -> None:
        self.journal = journal_of(database)
        self._ended: dict[uuid.UUID, asyncio.Event] = {}
        self._outbox: tuple[EventStore, Relay] | None = None

    def publish_with(self, store: EventStore, relay: Relay) -> None:
        """The outbox the placed events go to, and the relay to wake: the choreography's, once
        it runs (the feed, built before it, already tells this object of endings)."""
        self._outbox = (store, relay)

    async def place(self, checkout: CheckoutRecord, plan: list[str]) -> Loaded:
        """Record the checkout and its placed event; ``IntegrityError`` if its key is taken."""
        if self._outbox is None:
            raise RuntimeError("Placing.publish_with first")
        store, relay = self._outbox
        checkout.coordination = CHOREOGRAPHY
        placed = placed_event(checkout, plan)

        async def announce(tx: Transaction) -> None:
            await store.enqueue(tx, [placed])

        recorded = await self.journal.create(checkout, plan, also=announce)
        relay.wake()
        return recorded

    def ended(self, checkout_id: uuid.UUID) -> None:
        """The feed saw the checkout end: wake whoever waits for it here."""
        waiting = self._ended.get(checkout_id)
        if waiting is not None:
            waiting.set()

    async def wait(self, checkout_id: uuid.UUID, timeout_s: float) -> Loaded | None:
        """The checkout once terminal, if it ends within ``timeout_s``; else None."""
        until = time.monotonic() + timeout_s
        waiting = self._ended.setdefault(checkout_id, asyncio.Event())
        try:
            while True:
                left = until - time.monotonic()
                if left <= 0:
                    return None
                try:
                    await asyncio.wait_for(waiting.wait(), min(left, POLL_S))
                except TimeoutError:
                    pass
                waiting.clear()
                loaded = await self.journal.load(checkout_id)
                if loaded is not None and loaded[0].status in TERMINAL_STATUSES:
                    return loaded
        finally:
            self._ended.pop(checkout_id, None)
