"""The email service's part in a choreographed checkout (COORDINATION=choreography).

On its turn it sends the order confirmation, as ``POST /emails`` does; when a later step fails
for good it sends the cancellation, but only after a confirmation. Sending is idempotent on its
own (one message per checkout and template, recorded before it is delivered), so it happens
before the transaction that records the message and publishes the event it answers: a crash in
between sends nothing twice, and the redelivered message finds the email already sent.

A delivery that fails (the mail server is down) is retried by the reactor, then dead-lettered:
the checkout is then flagged stuck on the orchestrator, and the message waits, visible, in the
dead-letter queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from email_service import messages, outbox
from email_service.delivery import Mailer
from email_service.errors import DeliveryFailedError, DeliveryInProgressError
from email_service.schemas import EmailCreate
from servicekit.db.database import Database
from servicekit.db.statements import Transaction
from servicekit.events.envelope import Event
from servicekit.events.reactor import Reaction, Work
from servicekit.events.saga import (
    COMPENSATED,
    REFUSED,
    SUCCEEDED,
    answer,
    order_of,
    refusal,
    step_reactions,
)
from servicekit.idempotency import StoredResponse
from servicekit.problems import ProblemError

STEP = "email"
CONFIRMATION = "order_confirmation"
CANCELLATION = "order_cancelled"
# How often a delivery held by another is looked at again.
IN_PROGRESS_POLL_S = 1.0


def _email(event: Event, template: str) -> EmailCreate:
    order = order_of(event)
    context: dict[str, Any] = {
        "customer_name": order["customer"]["name"],
        "checkout_id": event.checkout_id,
        "items": order["items"],
        "total": order["total"],
        "currency": order["currency"],
        "points": order["points"],
    }
    return EmailCreate(
        to=order["customer"]["email"],
        template=template,
        checkout_id=event.checkout_id,
        context=context,
    )


def _answered(events: list[Event]) -> Work:
    async def work(_: Transaction) -> list[Event]:
        return events

    return work


def reactions_with(mailer: Mailer) -> Callable[[Database], dict[str, Reaction]]:
    """The email service's reactions, delivering through ``mailer``."""

    def reactions(database: Database) -> dict[str, Reaction]:
        async def submit(event: Event, template: str) -> StoredResponse:
            """The email sent, waiting out another delivery of it that holds its lease.

            That other delivery is a twin of this message being delivered now, or a process
            killed mid-delivery whose lease expires within the mailer's timeout and a margin;
            the reactor's own retries (a few seconds) would dead-letter the event before then.
            """
            waited_s, most_s = 0.0, mailer.timeout_s + outbox.LEASE_MARGIN_S + outbox.RETRY_AFTER_S
            while True:
                try:
                    return await outbox.submit(database, mailer, _email(event, template), key=None)
                except DeliveryInProgressError:
                    if waited_s >= most_s:
                        raise
                    await asyncio.sleep(IN_PROGRESS_POLL_S)
                    waited_s += IN_PROGRESS_POLL_S

        async def send(event: Event, template: str) -> dict[str, Any] | ProblemError:
            try:
                sent = await submit(event, template)
            except (DeliveryFailedError, DeliveryInProgressError):
                raise  # transient: the reactor tries again
            except ProblemError as exc:
                return exc
            return {"email_id": sent.body["id"], "status": sent.body["status"]}

        async def confirm(event: Event) -> Work:
            sent = await send(event, CONFIRMATION)
            if isinstance(sent, ProblemError):
                return _answered([answer(event, REFUSED, STEP, error=refusal(sent))])
            return _answered([answer(event, SUCCEEDED, STEP, result=sent)])

        async def cancel(event: Event) -> Work:
            async def confirmation(tx: Transaction) -> messages.Message | None:
                return await messages.find_message(
                    tx, checkout_id=event.checkout_id, template=CONFIRMATION
                )

            found = await database.run(confirmation, read_only=True)
            if found is None:  # never a cancellation without a confirmation
                return _answered(
                    [answer(event, COMPENSATED, STEP, result={"email_id": None}, undid=False)]
                )
            sent = await send(event, CANCELLATION)
            undone: dict[str, Any] = {"email_id": str(found.id)}
            if not isinstance(sent, ProblemError):
                undone["cancellation_email_id"] = sent["email_id"]
            return _answered([answer(event, COMPENSATED, STEP, result=undone, undid=True)])

        return step_reactions(STEP, act=confirm, compensate=cancel)

    return reactions
