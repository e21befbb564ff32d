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
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import stamina
from aio_pika.abc import AbstractIncomingMessage
from aiormq.exceptions import AMQPError, ChannelInvalidStateError

from servicekit.db.database import Database
from servicekit.db.statements import Transaction
from servicekit.events.envelope import Event
from servicekit.events.relay import Relay
from servicekit.events.store import EventStore
from servicekit.events.telemetry import EventTelemetry

log = logging.getLogger(__name__)

# What settling a message raises once its channel is gone (the broker restarted or the
# connection was cut between applying and acknowledging it).
CHANNEL_GONE = (AMQPError, ChannelInvalidStateError, ConnectionError)

Work = Callable[[Transaction], Awaitable[Sequence[Event]]]
Reaction = Callable[[Event], Awaitable[Work | None]]
MAX_ATTEMPTS = 5
APPLIED, DUPLICATE, IGNORED = "applied", "duplicate", "ignored"


class KeyedLocks:
    """One lock per key, for as long as anyone holds or awaits it.

    Counted, not judged by ``Lock.locked()``: between a release and the next waiter's wake-up the
    lock reads unlocked while a waiter is queued on it, and dropping it then would let the next
    message of the same checkout run beside that waiter.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def holding(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


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
        self._locks = KeyedLocks()

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
            await settle(message.reject(requeue=False), "unknown")
            return
        try:
            async with self._locks.holding(event.checkout_id):
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
            await settle(message.reject(requeue=False), event.message_id)
            return
        await settle(message.ack(), event.message_id)
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


async def settle(acknowledgement: Awaitable[None], message_id: str) -> None:
    """Acknowledge or reject, where a channel that closed meanwhile is no error of the message.

    The broker redelivers what it never heard settled: an applied message then finds its inbox
    row (a duplicate, acknowledged without effect) and a rejected one is tried again. Raising
    instead would only end the consumer's callback with an error nobody handles.
    """
    try:
        await acknowledgement
    except CHANNEL_GONE as error:
        log.info("reactor: %s not settled, its channel closed (%r): redelivered", message_id, error)
