"""servicekit.events without a broker: the outbox and its relays, the inbox and the reactor.

A recording broker stands in for RabbitMQ (the tests in ``tests/choreography`` use the real one);
the tables are the warehouse's, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiormq.exceptions import ChannelInvalidStateError

from servicekit.db.database import Database
from servicekit.db.statements import Transaction
from servicekit.events.envelope import Event
from servicekit.events.reactor import APPLIED, DUPLICATE, IGNORED, KeyedLocks, Reactor, Work
from servicekit.events.relay import Relay
from servicekit.events.store import EventStore
from servicekit.events.telemetry import EventTelemetry
from servicekit.migrations import upgrade
from warehouse_service.migrations import HISTORY

pytestmark = pytest.mark.anyio

POSTGRES_ONLY = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


class RecordingBroker:
    """Takes every publish at once, as a broker that confirms; ``fail`` makes publishing raise."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []  # (routing key, message id)
        self.fail = False

    async def publish(self, routing_key: str, _body: str, *, message_id: str) -> None:
        await asyncio.sleep(0)  # a confirm takes a round trip: let another relay run meanwhile
        if self.fail:
            raise ConnectionError("broker unreachable")
        self.published.append((routing_key, message_id))


@pytest.fixture
async def database(database_url: Callable[[str], str]) -> AsyncIterator[Database]:
    url = database_url("warehouse")
    upgrade(url, HISTORY)
    opened = Database.open(url, name="events-test")
    try:
        yield opened
    finally:
        await opened.close()


def succeeded(cause: Event) -> Event:
    """What the warehouse answers to ``cause``."""
    return Event(
        type="step.succeeded",
        checkout_id=cause.checkout_id,
        source="warehouse",
        data={**cause.data, "step": "warehouse"},
        causation_id=cause.message_id,
    )


def placed(checkout_id: str) -> Event:
    return Event(
        type="checkout.placed", checkout_id=checkout_id, source="test", data={"plan": ["warehouse"]}
    )


async def enqueue(database: Database, store: EventStore, events: list[Event]) -> None:
    async def work(tx: Transaction) -> None:
        await store.enqueue(tx, events)

    await database.run(work)


def relay_of(database: Database, store: EventStore, broker: RecordingBroker, **knobs: Any) -> Relay:
    return Relay(database, store, broker, EventTelemetry("warehouse"), **knobs)  # type: ignore[arg-type]


async def test_the_relay_publishes_in_order_then_empties_the_outbox(database: Database) -> None:
    store, broker = EventStore("warehouse"), RecordingBroker()
    events = [placed(f"c-{i}") for i in range(7)]
    await enqueue(database, store, events)
    relay = relay_of(database, store, broker, batch=3)
    assert [await relay.publish_once() for _ in range(4)] == [3, 3, 1, 0]
    assert broker.published == [("checkout.placed", e.message_id) for e in events]
    assert await store.waiting(database) == 0


async def test_an_event_is_in_the_outbox_only_if_its_transaction_commits(
    database: Database,
) -> None:
    store, broker = EventStore("warehouse"), RecordingBroker()

    async def fails(tx: Transaction) -> None:
        await store.enqueue(tx, [placed("c-rolled-back")])
        raise RuntimeError("the effect failed")

    with pytest.raises(RuntimeError):
        await database.run(fails)
    assert await store.waiting(database) == 0
    assert await relay_of(database, store, broker).publish_once() == 0


async def test_an_unconfirmed_batch_stays_and_is_published_once_the_broker_is_back(
    database: Database,
) -> None:
    store, broker = EventStore("warehouse"), RecordingBroker()
    event = placed("c-1")
    await enqueue(database, store, [event])
    # The claim is given back on failure: the retry does not wait for it to expire (15 s).
    relay = relay_of(database, store, broker, hold_s=15.0)
    broker.fail = True
    with pytest.raises(ConnectionError):
        await relay.publish_once()
    assert await store.waiting(database) == 1  # one caused event, not two
    broker.fail = False
    assert await relay.publish_once() == 1
    assert broker.published == [("checkout.placed", event.message_id)]


async def test_a_claim_held_by_a_dead_relay_expires_and_another_publishes_it(
    database: Database,
) -> None:
    store, broker = EventStore("warehouse"), RecordingBroker()
    await enqueue(database, store, [placed("c-1")])
    # A relay claims the row and dies before publishing: the claim holds the row for hold_s.
    assert len(await store.claim(database, limit=10, hold_s=0.3)) == 1
    other = relay_of(database, store, broker)
    assert await other.publish_once() == 0
    await asyncio.sleep(0.35)
    assert await other.publish_once() == 1


@POSTGRES_ONLY
async def test_replicas_relaying_one_outbox_publish_each_event_once(database: Database) -> None:
    """Three relays on one PostgreSQL outbox (replicas of a service), claiming with SKIP LOCKED
    while events keep arriving: every event is published, none twice."""
    store, broker = EventStore("warehouse"), RecordingBroker()
    events = [placed(f"c-{i}") for i in range(600)]
    relays = [relay_of(database, store, broker, batch=25) for _ in range(3)]

    async def produce() -> None:
        for start in range(0, len(events), 50):
            await enqueue(database, store, events[start : start + 50])

    async def drain(relay: Relay) -> None:
        idle = 0
        while idle < 20:
            idle = 0 if await relay.publish_once() else idle + 1
            await asyncio.sleep(0.005)

    await asyncio.gather(produce(), *(drain(relay) for relay in relays))
    counts = Counter(message_id for _, message_id in broker.published)
    assert set(counts) == {event.message_id for event in events}
    assert max(counts.values()) == 1
    assert await store.waiting(database) == 0


async def test_the_reactor_applies_a_message_once_and_skips_its_twin(database: Database) -> None:
    store, broker = EventStore("warehouse"), RecordingBroker()
    relay = relay_of(database, store, broker)
    applied: list[str] = []

    async def react(event: Event) -> Work:
        async def work(_: Transaction) -> list[Event]:
            applied.append(event.checkout_id)
            return [succeeded(event)]

        return work

    reactor = Reactor(database, store, relay, {"checkout.placed": react}, EventTelemetry("w"))
    event = placed("c-1")
    assert await reactor.apply(event) == APPLIED
    assert await reactor.apply(event) == DUPLICATE
    assert (
        await reactor.apply(Event(type="step.refused", checkout_id="c-2", source="x", data={}))
        == IGNORED
    )
    assert applied == ["c-1"]
    # The event it caused was committed with it, once: causation and trace carried along.
    assert await relay.publish_once() == 1
    assert broker.published[0][0] == "step.succeeded"


class DeliveredMessage:
    """What aio-pika hands the reactor, settled on a channel that may have closed meanwhile."""

    def __init__(self, event: Event, *, channel_closed: bool) -> None:
        self.body = event.to_json().encode()
        self.channel_closed = channel_closed
        self.settled: list[str] = []

    async def ack(self) -> None:
        await self._settle("ack")

    async def reject(self, requeue: bool = False) -> None:
        await self._settle(f"reject(requeue={requeue})")

    async def _settle(self, how: str) -> None:
        if self.channel_closed:
            raise ChannelInvalidStateError  # what aio-pika raises once the connection was cut
        self.settled.append(how)


async def test_a_message_whose_channel_closed_before_its_ack_is_applied_once_on_redelivery(
    database: Database,
) -> None:
    """The broker connection cut between applying and acknowledging: the callback ends quietly
    (an error there reaches nobody), and the broker's redelivery is a duplicate, acknowledged."""
    store = EventStore("warehouse")
    applied: list[str] = []

    async def react(event: Event) -> Work:
        async def work(_: Transaction) -> list[Event]:
            applied.append(event.checkout_id)
            return []

        return work

    reactor = Reactor(
        database,
        store,
        relay_of(database, store, RecordingBroker()),
        {"checkout.placed": react},
        EventTelemetry("w"),
    )
    event = placed("c-1")
    cut = DeliveredMessage(event, channel_closed=True)
    await reactor.on_message(cut)  # type: ignore[arg-type]
    redelivered = DeliveredMessage(event, channel_closed=False)
    await reactor.on_message(redelivered)  # type: ignore[arg-type]
    assert applied == ["c-1"]
    assert redelivered.settled == ["ack"]
    consumed = {
        sample.labels["outcome"]: sample.value
        for metric in reactor.telemetry.consumed.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }
    assert consumed == {APPLIED: 1.0, DUPLICATE: 1.0}


async def test_a_reaction_that_is_not_its_turn_writes_nothing(database: Database) -> None:
    store = EventStore("warehouse")

    async def not_mine(_: Event) -> Work | None:
        return None

    reactor = Reactor(
        database,
        store,
        relay_of(database, store, RecordingBroker()),
        {"checkout.placed": not_mine},
        EventTelemetry("w"),
    )
    event = placed("c-1")
    assert await reactor.apply(event) == IGNORED
    assert not await store.seen(database, event.message_id)


async def test_concurrent_twins_of_one_message_apply_it_once(database: Database) -> None:
    """Two deliveries of one message racing (two replicas of a service): the inbox's key lets
    one commit; the other rolls back its work, effect included."""
    store = EventStore("warehouse")
    relay = relay_of(database, store, RecordingBroker())

    async def react(event: Event) -> Work:
        async def work(_: Transaction) -> list[Event]:
            return [succeeded(event)]

        return work

    reactors = [
        Reactor(database, store, relay, {"checkout.placed": react}, EventTelemetry("w"))
        for _ in range(2)
    ]
    event = placed("c-1")
    outcomes = await asyncio.gather(*(reactor.apply(event) for reactor in reactors))
    assert sorted(outcomes) == [APPLIED, DUPLICATE]
    assert await store.waiting(database) == 1  # one caused event, not two


async def test_messages_of_one_checkout_run_one_at_a_time_in_arrival_order() -> None:
    """Three messages of a checkout arriving together: the third must not start beside the
    second in the moment the first lets go (a lock that reads unlocked while a waiter is queued
    on it must not be dropped), and the locks are gone once nobody needs them."""
    locks = KeyedLocks()
    running: list[str] = []
    order: list[str] = []

    async def message(name: str) -> None:
        async with locks.holding("checkout-1"):
            running.append(name)
            assert running == [name], running
            await asyncio.sleep(0.01)
            order.append(name)
            running.remove(name)

    tasks = [asyncio.create_task(message(name)) for name in ("placed", "warehouse", "rewards")]
    # Arriving once the first is done and the second holds the lock, with the third queued.
    await asyncio.sleep(0.015)
    tasks.append(asyncio.create_task(message("email")))
    await asyncio.gather(*tasks)
    assert order == ["placed", "warehouse", "rewards", "email"]
    assert len(locks) == 0
