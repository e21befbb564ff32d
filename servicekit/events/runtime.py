"""A service's part in the choreography, for its app's lifetime: broker, relay and reactor."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

from servicekit.db.database import Database
from servicekit.events import DEFAULT_BROKER_URL, DEFAULT_PREFIX
from servicekit.events.broker import Broker
from servicekit.events.reactor import Reaction, Reactor
from servicekit.events.relay import Relay
from servicekit.events.store import EventStore
from servicekit.events.telemetry import EventTelemetry

Coordination = Literal["orchestration", "choreography"]


class CoordinationSettings(BaseSettings):
    """``COORDINATION``, ``BROKER_URL`` and ``EVENTS_PREFIX``: the same on all four services."""

    coordination: Coordination = "orchestration"
    broker_url: str = DEFAULT_BROKER_URL
    # Names the exchange and queues, so deployments (or test runs) can share one broker.
    events_prefix: str = DEFAULT_PREFIX


class BrokerUnavailableError(RuntimeError):
    """COORDINATION=choreography, and no broker answers at BROKER_URL."""


@dataclass
class Choreography:
    """What a service runs in choreography: publish with ``relay.wake()`` after enqueueing."""

    store: EventStore
    broker: Broker
    relay: Relay
    reactor: Reactor


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@contextlib.asynccontextmanager
async def choreography(
    database: Database,
    settings: CoordinationSettings,
    *,
    consumer: str,
    reactions: Mapping[str, Reaction],
    single_active: bool = False,
    telemetry: EventTelemetry | None = None,
    tables: str | None = None,
) -> AsyncIterator[Choreography]:
    """Connect to the broker, relay this database's outbox and consume ``consumer``'s queue.

    ``telemetry``: where its counters and spans go (by default, counters of its own).
    ``tables``: whose outbox and inbox these are (by default the consumer's: ``<consumer>_event_outbox``).
    """
    store = EventStore(tables or consumer)
    telemetry = telemetry or EventTelemetry(consumer)
    broker = Broker(settings.broker_url, prefix=settings.events_prefix)
    try:
        await broker.connect()
    except Exception as exc:
        raise BrokerUnavailableError(
            f"COORDINATION=choreography, but no RabbitMQ answers at {_shown(settings.broker_url)}"
            f" ({type(exc).__name__}): start one (docker compose up rabbitmq, or"
            " rabbitmq-server -detached) or set BROKER_URL."
        ) from exc
    relay = Relay(database, store, broker, telemetry)
    reactor = Reactor(database, store, relay, reactions, telemetry)
    relaying = asyncio.create_task(relay.run(), name=f"{consumer}-relay")
    try:
        if reactions:
            await broker.consume(
                consumer, reactor.event_types, reactor.on_message, single_active=single_active
            )
        yield Choreography(store, broker, relay, reactor)
    finally:
        relaying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relaying
        await broker.close()
