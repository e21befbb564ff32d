"""The delivery lease of the outbox, queried directly."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from functools import partial

import pytest
from sqlmodel import Session

from email_service import messages
from email_service.models import EmailTable, OutboxMessage
from servicekit.db.database import Database
from servicekit.db.engines import create_sync_engine
from servicekit.db.statements import Transaction

pytestmark = pytest.mark.anyio


@pytest.fixture
async def database(email_database: str, anyio_backend: str) -> AsyncIterator[Database]:
    """The kit's database on the email tables of a fresh database."""
    del anyio_backend  # requested so the fixture runs on the test's event loop
    engine = create_sync_engine(email_database)
    EmailTable.metadata.create_all(engine)
    engine.dispose()
    database = Database.open(email_database)
    yield database
    await database.close()


async def _record(tx: Transaction) -> uuid.UUID:
    added = await messages.add_message(
        tx,
        to="ada@example.com",
        template="order_confirmation",
        checkout_id="c-1",
        subject="s",
        body="b",
    )
    if added is None:
        added = await messages.find_message(tx, checkout_id="c-1", template="order_confirmation")
    assert added is not None
    return added.id


async def _pending(database: Database) -> uuid.UUID:
    """Record the c-1 confirmation (or find it), committed; its id."""
    return await database.run(_record)


async def _attempts(database: Database, message_id: uuid.UUID) -> int:
    return (await messages.read_message(database, message_id=message_id)).attempts


async def _claim(database: Database, message_id: uuid.UUID, lease_s: float) -> bool:
    return await database.run(partial(messages.claim, message_id=message_id, lease_s=lease_s))


async def test_held_lease_refuses_a_second_claim(database: Database) -> None:
    """While one attempt holds the lease, a second claim fails and the attempt is counted once."""
    message_id = await _pending(database)
    assert await _claim(database, message_id, 60)
    assert not await _claim(database, message_id, 60)
    assert await _attempts(database, message_id) == 1


async def test_lease_of_a_dead_attempt_expires(database: Database) -> None:
    """A lease that has run out (its attempt died) lets the next request deliver."""
    message_id = await _pending(database)
    assert await _claim(database, message_id, -1)
    assert await _claim(database, message_id, 60)
    assert await _attempts(database, message_id) == 2


async def test_message_recorded_with_its_lease_is_claimed(database: Database) -> None:
    """A message recorded already claimed counts one attempt and refuses a second claim."""
    added = await database.run(
        partial(
            messages.add_message, to="a@example.com", template="order_confirmation",
            checkout_id="c-2", subject="s", body="b", lease_s=60,
        )
    )  # fmt: skip
    assert added is not None
    assert not await _claim(database, added.id, 60)
    assert await _attempts(database, added.id) == 1


async def test_delivered_message_cannot_be_claimed(database: Database, email_database: str) -> None:
    """Once sent, a message is never claimed for delivery again, and a late failure changes nothing."""
    message_id = await _pending(database)

    async def deliver(tx: Transaction) -> None:
        assert await messages.claim(tx, message_id=message_id, lease_s=60)
        await messages.mark_delivered(tx, message_id=message_id, status="sent")

    await database.run(deliver)
    await database.run(partial(messages.mark_failed, message_id=message_id, error="late"))
    assert not await _claim(database, message_id, -1)
    engine = create_sync_engine(email_database)
    with Session(engine) as session:  # and the ORM reads back what plain SQL wrote
        message = session.get(OutboxMessage, message_id)
        assert message is not None
        assert (message.status, message.last_error, message.locked_until) == ("sent", None, None)
        assert message.sent_at is not None
        assert message.sent_at.tzinfo is not None
    engine.dispose()


async def test_second_record_of_a_checkout_template_returns_the_first(database: Database) -> None:
    """Recording the same checkout and template twice keeps one row and returns it."""
    first = await _pending(database)
    again = await _pending(database)
    assert again == first
    listed = await messages.list_messages(database, to=None, checkout_id="c-1", limit=10)
    assert [message.id for message in listed] == [first]
