"""The delivery lease of the outbox, queried directly."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from email_service import messages, store
from email_service.models import EmailTable
from servicekit.db import create_sync_engine
from servicekit.sql import Transaction, Transactions


@pytest.fixture
def engine(email_database: str) -> Iterator[Engine]:
    """An engine on the email tables of a fresh database."""
    engine = create_sync_engine(email_database)
    EmailTable.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def tx(engine: Engine) -> Iterator[Transaction]:
    """A plain-SQL transaction on the email tables."""
    with Transactions(engine).transaction() as transaction:
        yield transaction


def _pending(tx: Transaction) -> uuid.UUID:
    """Record the c-1 confirmation (or find it) and commit; its id."""
    added = messages.add_message(
        tx,
        to="ada@example.com",
        template="order_confirmation",
        checkout_id="c-1",
        subject="s",
        body="b",
    )
    if added is None:
        added = messages.find_message(tx, checkout_id="c-1", template="order_confirmation")
    tx.commit()
    assert added is not None
    return added.id


def _attempts(tx: Transaction, message_id: uuid.UUID) -> int:
    message = messages.get_message(tx, message_id=message_id)
    tx.rollback()
    assert message is not None
    return message.attempts


def test_held_lease_refuses_a_second_claim(tx: Transaction) -> None:
    """While one attempt holds the lease, a second claim fails and the attempt is counted once."""
    message_id = _pending(tx)
    assert messages.claim(tx, message_id=message_id, lease_s=60)
    tx.commit()
    assert not messages.claim(tx, message_id=message_id, lease_s=60)
    tx.rollback()
    assert _attempts(tx, message_id) == 1


def test_lease_of_a_dead_attempt_expires(tx: Transaction) -> None:
    """A lease that has run out (its attempt died) lets the next request deliver."""
    message_id = _pending(tx)
    assert messages.claim(tx, message_id=message_id, lease_s=-1)
    tx.commit()
    assert messages.claim(tx, message_id=message_id, lease_s=60)
    tx.commit()
    assert _attempts(tx, message_id) == 2


def test_message_recorded_with_its_lease_is_claimed(tx: Transaction) -> None:
    """A message recorded already claimed counts one attempt and refuses a second claim."""
    added = messages.add_message(
        tx, to="a@example.com", template="order_confirmation", checkout_id="c-2", subject="s",
        body="b", lease_s=60,
    )  # fmt: skip
    tx.commit()
    assert added is not None
    assert not messages.claim(tx, message_id=added.id, lease_s=60)
    tx.rollback()
    assert _attempts(tx, added.id) == 1


def test_delivered_message_cannot_be_claimed(tx: Transaction, engine: Engine) -> None:
    """Once sent, a message is never claimed for delivery again, and a late failure changes nothing."""
    message_id = _pending(tx)
    assert messages.claim(tx, message_id=message_id, lease_s=60)
    messages.mark_delivered(tx, message_id=message_id, status="sent")
    tx.commit()
    messages.mark_failed(tx, message_id=message_id, error="late")
    tx.commit()
    assert not messages.claim(tx, message_id=message_id, lease_s=-1)
    tx.rollback()
    with Session(engine) as session:  # and the ORM reads back what plain SQL wrote
        message = store.read_message(session, message_id=message_id)
        assert (message.status, message.last_error, message.locked_until) == ("sent", None, None)
        assert message.sent_at is not None
        assert message.sent_at.tzinfo is not None


def test_second_record_of_a_checkout_template_returns_the_first(
    tx: Transaction, engine: Engine
) -> None:
    """Recording the same checkout and template twice keeps one row and returns it."""
    first = _pending(tx)
    again = _pending(tx)
    assert again == first
    with Session(engine) as session:
        assert store.list_messages(session, to=None, checkout_id="c-1", limit=10)[0].id == first
        assert len(store.list_messages(session, to=None, checkout_id="c-1", limit=10)) == 1
