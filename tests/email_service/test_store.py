"""The delivery lease of the outbox, queried directly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from email_service import store
from email_service.models import EmailTable, OutboxMessage
from servicekit.db import create_sync_engine


@pytest.fixture
def engine(email_database: str) -> Iterator[Engine]:
    """An engine on the email tables of a fresh database."""
    engine = create_sync_engine(email_database)
    EmailTable.metadata.create_all(engine)
    yield engine
    engine.dispose()


def _pending(session: Session) -> OutboxMessage:
    return store.add_message(
        session,
        to="ada@example.com",
        template="order_confirmation",
        checkout_id="c-1",
        subject="s",
        body="b",
    )


def test_held_lease_refuses_a_second_claim(engine: Engine) -> None:
    """While one attempt holds the lease, a second claim fails and the attempt is counted once."""
    with Session(engine) as session:
        message_id = _pending(session).id
        assert store.claim(session, message_id=message_id, lease_s=60)
        session.commit()
        assert not store.claim(session, message_id=message_id, lease_s=60)
        session.rollback()
        assert store.read_message(session, message_id=message_id).attempts == 1


def test_lease_of_a_dead_attempt_expires(engine: Engine) -> None:
    """A lease that has run out (its attempt died) lets the next request deliver."""
    with Session(engine) as session:
        message_id = _pending(session).id
        assert store.claim(session, message_id=message_id, lease_s=-1)
        session.commit()
        assert store.claim(session, message_id=message_id, lease_s=60)
        session.commit()
        assert store.read_message(session, message_id=message_id).attempts == 2


def test_delivered_message_cannot_be_claimed(engine: Engine) -> None:
    """Once sent, a message is never claimed for delivery again, and a late failure changes nothing."""
    with Session(engine) as session:
        message_id = _pending(session).id
        assert store.claim(session, message_id=message_id, lease_s=60)
        store.mark_delivered(session, message_id=message_id, status="sent")
        session.commit()
        store.mark_failed(session, message_id=message_id, error="late")
        session.commit()
        assert not store.claim(session, message_id=message_id, lease_s=-1)
        session.rollback()
        message = store.read_message(session, message_id=message_id)
        assert (message.status, message.last_error, message.locked_until) == ("sent", None, None)


def test_second_record_of_a_checkout_template_returns_the_first(engine: Engine) -> None:
    """Recording the same checkout and template twice keeps one row and returns it."""
    with Session(engine) as session:
        first = _pending(session).id
        again = _pending(session).id
        assert again == first
        assert store.list_messages(session, to=None, checkout_id="c-1", limit=10)[0].id == first
        assert len(store.list_messages(session, to=None, checkout_id="c-1", limit=10)) == 1
