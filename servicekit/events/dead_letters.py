"""The dead-letter queue: what is in it, and putting it back (``checkout-suite dead-letters``).

A message lands in ``<prefix>.dead`` when its consumer could not apply it (after five attempts) or
could not read it. Once the cause is fixed (a mail server back, a bug deployed away), replaying
publishes each message again on the events exchange with its own ``message_id``: every consumer
bound to its type receives it, and those that applied it already skip it (their inbox), so only
the one that failed acts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from servicekit.events.broker import CONFIRM_TIMEOUT_S

# One listing or replay takes at most this many messages (the rest wait for the next run).
MAX_MESSAGES = 1000


class NoSuchDeploymentError(LookupError):
    """The broker has no queues of this prefix."""


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter queue, as an operator needs to see it."""

    message_id: str | None
    routing_key: str
    checkout_id: str | None
    queue: str | None  # the queue it was rejected from
    reason: str | None  # "rejected", "expired", …
    count: int  # times it was dead-lettered


def _describe(message: AbstractIncomingMessage) -> DeadLetter:
    deaths: Any = (message.headers or {}).get("x-death") or []
    first = deaths[0] if deaths and isinstance(deaths[0], dict) else {}
    try:
        checkout_id = json.loads(message.body).get("checkout_id")
    except (ValueError, AttributeError):
        checkout_id = None
    return DeadLetter(
        message_id=message.message_id,
        routing_key=message.routing_key or "",
        checkout_id=checkout_id,
        queue=first.get("queue"),
        reason=first.get("reason"),
        count=int(first.get("count", 1)),
    )


async def dead_letters(url: str, prefix: str, *, replay: bool, limit: int) -> list[DeadLetter]:
    """The messages of ``<prefix>.dead`` (up to ``limit``), left there, or replayed and removed."""
    connection = await aio_pika.connect(url, timeout=5)
    try:
        channel = await connection.channel(publisher_confirms=True)
        try:
            # Passive: looking never creates a queue or exchange for a mistyped prefix.
            queue = await channel.declare_queue(f"{prefix}.dead", passive=True)
            exchange = await channel.get_exchange(f"{prefix}.events", ensure=True)
        except aio_pika.exceptions.ChannelNotFoundEntity as exc:
            raise NoSuchDeploymentError(
                f"no {prefix}.dead queue or {prefix}.events exchange on this broker: has a "
                f"service run with EVENTS_PREFIX={prefix} and COORDINATION=choreography?"
            ) from exc
        found: list[DeadLetter] = []
        taken: list[AbstractIncomingMessage] = []
        for _ in range(min(limit, MAX_MESSAGES)):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            found.append(_describe(message))
            if replay:
                again = aio_pika.Message(
                    message.body,
                    message_id=message.message_id,
                    content_type=message.content_type,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                await exchange.publish(
                    again, routing_key=message.routing_key or "", timeout=CONFIRM_TIMEOUT_S
                )
                await message.ack()  # only once the broker confirmed the copy
            else:
                taken.append(message)
        for message in taken:
            # Back where they were, in order: listing changes nothing.
            await message.nack(requeue=True)
        return found
    finally:
        await connection.close()
