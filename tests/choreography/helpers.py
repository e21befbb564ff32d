"""Helpers of the choreography tests: a tap on the event exchange, and the consumers' counters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aio_pika
import anyio
import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BrokerUnderTest


@dataclass(frozen=True)
class Tapped:
    routing_key: str
    body: bytes
    message_id: str | None


@asynccontextmanager
async def tap(broker: BrokerUnderTest) -> AsyncIterator[list[Tapped]]:
    """Every event published on the test's exchange while inside, in arrival order."""
    taken: list[Tapped] = []
    connection = await aio_pika.connect(broker.url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            f"{broker.prefix}.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="#")

        async def keep(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            taken.append(Tapped(message.routing_key or "", message.body, message.message_id))
            await message.ack()

        await queue.consume(keep)
        yield taken
    finally:
        await connection.close()


async def publish(broker: BrokerUnderTest, routing_key: str, body: bytes, message_id: str) -> None:
    """Publish one message on the test's exchange, as a relay would (persistent, confirmed)."""
    connection = await aio_pika.connect(broker.url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(f"{broker.prefix}.events")
        message = aio_pika.Message(
            body, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        )
        await exchange.publish(message, routing_key=routing_key)
    finally:
        await connection.close()


async def dead_letters(broker: BrokerUnderTest) -> int:
    """How many messages wait in the test's dead-letter queue."""
    connection = await aio_pika.connect(broker.url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{broker.prefix}.dead", durable=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def consumed(client: httpx.AsyncClient, outcome: str) -> float:
    """How many messages the service behind ``client`` took with ``outcome`` (its /metrics)."""
    text = (await client.get("/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "checkout_events_consumed"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("outcome") == outcome
    )


async def eventually(check: object, *, timeout_s: float = 10.0) -> None:
    """Wait until the awaitable factory ``check()`` is true."""
    with anyio.fail_after(timeout_s):
        while not await check():  # type: ignore[operator]
            await anyio.sleep(0.05)
