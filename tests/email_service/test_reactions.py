"""The email service's choreography reaction, without a broker: its turn, and a twin's wait."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from email_service import reactions as email_reactions
from email_service.migrations import HISTORY
from servicekit.db.database import Database
from servicekit.events.envelope import Event
from servicekit.events.saga import SUCCEEDED
from servicekit.migrations import upgrade
from tests.email_service.helpers import ADA, GatedMailer

pytestmark = pytest.mark.anyio


def _rewards_succeeded(checkout_id: str) -> Event:
    """What the rewards service publishes before it is the email's turn."""
    order = {
        "customer": {"id": "c-42", "email": ADA, "name": "Ada", "rewards_member": True},
        "items": [{"sku": "SKU-001", "quantity": 1, "unit_price": "9.99"}],
        "total": "9.99",
        "currency": "USD",
        "points": 9,
    }
    return Event(
        type=SUCCEEDED,
        checkout_id=checkout_id,
        source="rewards",
        data={"plan": ["warehouse", "rewards", "email"], "order": order, "step": "rewards"},
    )


async def _answer(database: Database, reaction: Any, event: Event) -> Event:
    work = await reaction(event)
    assert work is not None
    (answered,) = await database.run(work)
    return answered  # type: ignore[no-any-return]


async def test_a_twin_arriving_mid_delivery_waits_for_it_instead_of_failing(
    email_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same message delivered twice (a redelivery after a crash, or two replicas): the twin
    finds the email being delivered and waits for that delivery's lease, then answers with the
    same email, instead of raising until the reactor dead-letters it. One email is sent."""
    monkeypatch.setattr(email_reactions, "IN_PROGRESS_POLL_S", 0.05)
    upgrade(email_database, HISTORY)
    database = Database.open(email_database, name="email-test")
    mailer = GatedMailer()
    react = email_reactions.reactions_with(mailer)(database)[SUCCEEDED]
    event = _rewards_succeeded("c-1")
    answers: dict[str, Event] = {}

    async def deliver(name: str) -> None:
        answers[name] = await _answer(database, react, event)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(deliver, "first")
            with anyio.fail_after(10):
                await mailer.started.wait()
            group.start_soon(deliver, "twin")
            await anyio.sleep(0.5)  # the twin meanwhile finds the delivery in progress, waits
            assert "twin" not in answers
            mailer.release.set()
    finally:
        await database.close()
    assert answers["first"].type == answers["twin"].type == SUCCEEDED
    assert answers["first"].data["result"] == answers["twin"].data["result"]
    assert len(mailer.delivered) == 1
