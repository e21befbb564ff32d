"""The rewards service's part in a choreographed checkout (COORDINATION=choreography).

On its turn it credits a member's points, as ``POST /transactions`` does (a non-member's
checkout is skipped); when a later step fails for good it voids the checkout, reversing any
credit, as ``POST /checkouts/{id}/void`` does. Both call the same rules (``ledger``), in the
transaction that records the message and the event it answers.
"""

from __future__ import annotations

from rewards_service import ledger
from servicekit.db.database import Database
from servicekit.db.statements import Transaction
from servicekit.events.envelope import Event
from servicekit.events.reactor import Reaction, Work
from servicekit.events.saga import (
    COMPENSATED,
    REFUSED,
    SKIPPED,
    SUCCEEDED,
    answer,
    order_of,
    refusal,
    step_reactions,
)
from servicekit.problems import ProblemError

STEP = "rewards"


async def credit(event: Event) -> Work:
    order = order_of(event)
    customer = order["customer"]

    async def work(tx: Transaction) -> list[Event]:
        if not customer.get("rewards_member"):
            return [answer(event, SKIPPED, STEP)]
        try:
            transaction, _ = await ledger.credit(
                tx,
                customer_id=customer["id"],
                checkout_id=event.checkout_id,
                points=order["points"],
            )
        except ProblemError as exc:
            await tx.rollback()
            return [answer(event, REFUSED, STEP, error=refusal(exc))]
        result = {"transaction_id": str(transaction.id), "points": transaction.points}
        return [answer(event, SUCCEEDED, STEP, result=result)]

    return work


async def void(event: Event) -> Work:
    async def work(tx: Transaction) -> list[Event]:
        voided = await ledger.void_checkout(tx, checkout_id=event.checkout_id)
        # No reversal: the checkout was never credited, and now can never be.
        reversal = voided.reversals[0] if voided.reversals else None
        undone = {
            "transaction_id": str(reversal.reverses_id) if reversal else None,
            "reversal_id": str(reversal.id) if reversal else None,
        }
        return [answer(event, COMPENSATED, STEP, result=undone, undid=reversal is not None)]

    return work


def reactions(_: Database) -> dict[str, Reaction]:
    """The reactions of this step (their transactions are the reactor's, on this database)."""
    return step_reactions(STEP, act=credit, compensate=void)
