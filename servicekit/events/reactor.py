"""The reactor: applies each message of a queue once, in one transaction with what it causes.

A ``Reaction`` receives an event and returns the transactional part of its effect (``Work``),
or None to ignore it (not this service's turn: no read of the inbox then). It may act outside
the transaction first, when that act is idempotent on its own, since a redelivered message
reaches it again before the inbox is read (the email service delivers by the message's natural
key, so a twin finds the email sent; the journal's feed only moves statuses forward).
The work runs in one transaction with the inbox row of the message and the outbox rows of the
events it returns, so after any crash the message is either applied with its consequences or
not at all, and a redelivery finds the inbox row and is acknowledged without effect.

A reaction that keeps raising (five attempts, backing off) is rejected to the dead-letter queue
and logged: kept and visible, not lost, and not blocking the messages behind it. Messages of one
checkout are applied one at a time in this process, in the order they arrive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

import stamina
from aio_pika.abc import AbstractIncomingMessage

from servicekit.db.database import Database
from servicekit.db.statements import Transaction
from servicekit.events.envelope import Event
from servicekit.events.relay import Relay
from servicekit.events.store import EventStore
from servicekit.events.telemetry import EventTelemetry

log = logging.getLogger(__name__)

Work = Callable[[Transaction], Awaitable[Sequence[Event]]]
Reaction = Callable[[Event], Awaitable[Work | None]]
MAX_ATTEMPTS = 5
APPLIED, DUPLICATE, IGNORED = "applied", "duplicate", "ignored"


class Reactor:
    """Applies the events of one consumer's queue to its database."""

    def __init__(
        self,
        database: Database,
        store: EventStore,
        relay: Relay,
        reactions: Mapping[str, Reaction],
        telemetry: EventTelemetry,
    ) -> None:
        self.database = database
        self.store = store
        self.relay = relay
        self.reactions = reactions
        self.telemetry = telemetry
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def event_types(self) -> list[str]:
        return sorted(self.reactions)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        """The broker's callback: apply, then acknowledge; reject what cannot be applied."""
        try:
            event = Event.from_json(message.body)
        except ValueError:
            log.error("reactor: dead-lettered a message that is not an event", exc_info=True)
            self.telemetry.took("unknown", "dead_lettered")
            await message.reject(requeue=False)
            return
        lock = self._locks.setdefault(event.checkout_id, asyncio.Lock())
        try:
            async with lock:
                outcome = await self.apply(event)
        except Exception:
            log.exception(
                "reactor: dead-lettered %s %s of checkout %s after %d attempts",
                event.type,
                event.message_id,
                event.checkout_id,
                MAX_ATTEMPTS,
            )
            self.telemetry.took(event.type, "dead_lettered")
            await message.reject(requeue=False)
            return
        finally:
            if not lock.locked() and self._locks.get(event.checkout_id) is lock:
                del self._locks[event.checkout_id]
        await message.ack()
        self.telemetry.took(event.type, outcome)

    async def apply(self, event: Event) -> str:
        """Apply ``event`` once: ``applied``, ``duplicate`` (applied before) or ``ignored``."""
        reaction = self.reactions.get(event.type)
        if reaction is None:
            return IGNORED
        async for attempt in stamina.retry_context(
            on=Exception, attempts=MAX_ATTEMPTS, wait_initial=0.05, wait_max=2.0, timeout=30.0
        ):
            with attempt:
                outcome, caused = await self._apply_once(event, reaction)
        if caused:
            self.relay.wake()
        return outcome

    async def _apply_once(self, event: Event, reaction: Reaction) -> tuple[str, Sequence[Event]]:
        """The outcome, and the events ``event`` caused once committed."""
        # Whose turn it is comes first: most messages of a queue are not this service's (it
        # sees every step's events), and telling costs no read of the inbox.
        work = await reaction(event)
        if work is None:
            return IGNORED, ()
        if await self.store.seen(self.database, event.message_id):
            return DUPLICATE, ()

        async def transaction(tx: Transaction) -> tuple[str, Sequence[Event]]:
            # The work may roll back what it began (a refusal changes nothing): the inbox row and
            # the events it causes come after, so they are in the transaction that commits.
            caused = await work(tx)
            if not await self.store.record(tx, event):
                await tx.rollback()  # a twin of this message was applied meanwhile
                return DUPLICATE, ()
            await self.store.enqueue(tx, caused)
            return APPLIED, caused

        # A span only for what this service applies: the events it ignores would drown a trace.
        with self.telemetry.applying(event):
            return await self.database.run(transaction)
