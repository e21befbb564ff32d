"""RabbitMQ through aio-pika: one topic exchange of checkout events, a queue per consumer.

Every name starts with a prefix (``EVENTS_PREFIX``, default ``checkout``), so several
deployments (or test runs) can share one broker without seeing each other's events:

- ``<prefix>.events``: the topic exchange; an event's routing key is its type (``step.succeeded``).
- ``<prefix>.<consumer>``: a durable queue per consuming service, bound to the types it reacts to.
- ``<prefix>.dead``: where a message goes that could not be applied (rejected by its consumer):
  kept, visible in the management UI, never retried on its own.

Messages are persistent and published with publisher confirms: ``publish`` returns once the
broker has taken the message, so the relay deletes an outbox row only after that.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from servicekit.events import DEFAULT_PREFIX

Consumer = Callable[[AbstractIncomingMessage], Awaitable[None]]
RECONNECT_INTERVAL_S = 1.0
CONFIRM_TIMEOUT_S = 5.0


class Broker:
    """A connection to RabbitMQ that reconnects by itself (aio-pika's robust connection)."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}.dead"

    def queue_name(self, consumer: str) -> str:
        return f"{self.prefix}.{consumer}"

    async def connect(self, *, timeout_s: float = 5.0) -> None:
        """Connect and declare the exchanges; raises if no broker answers within ``timeout_s``."""
        # Reconnecting every second rather than aio-pika's five: after a broker restart the
        # checkouts in flight resume that much sooner, and an attempt costs one TCP connect.
        self._connection = await aio_pika.connect_robust(
            self.url, timeout=timeout_s, reconnect_interval=RECONNECT_INTERVAL_S
        )
        self._channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await self._channel.declare_exchange(
            f"{self.prefix}.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        dead = await self._channel.declare_exchange(
            f"{self.prefix}.dead", aio_pika.ExchangeType.FANOUT, durable=True
        )
        dead_queue = await self._channel.declare_queue(self.dead_letter_queue, durable=True)
        await dead_queue.bind(dead)

    async def publish(self, routing_key: str, body: str, *, message_id: str) -> None:
        """Publish one persistent message; returns once the broker confirmed it."""
        if self._exchange is None:
            raise RuntimeError("Broker.connect first")
        message = aio_pika.Message(
            body.encode(),
            message_id=message_id,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        # Bounded: a confirm lost with its connection would otherwise hold the relay forever.
        await self._exchange.publish(message, routing_key=routing_key, timeout=CONFIRM_TIMEOUT_S)

    async def consume(
        self,
        consumer: str,
        routing_keys: Sequence[str],
        callback: Consumer,
        *,
        prefetch: int = 32,
        single_active: bool = False,
    ) -> AbstractQueue:
        """Deliver the events of ``routing_keys`` to ``callback``, on a channel of their own.

        ``single_active``: of several replicas consuming the queue, one at a time receives (the
        others stand by), so its messages are applied in the order they were published.
        """
        if self._connection is None:
            raise RuntimeError("Broker.connect first")
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        exchange = await channel.get_exchange(f"{self.prefix}.events")
        arguments: dict[str, Any] = {"x-dead-letter-exchange": f"{self.prefix}.dead"}
        if single_active:
            arguments["x-single-active-consumer"] = True
        queue = await channel.declare_queue(
            self.queue_name(consumer), durable=True, arguments=arguments
        )
        for key in routing_keys:
            await queue.bind(exchange, routing_key=key)
        await queue.consume(callback)
        return queue

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = self._channel = self._exchange = None
