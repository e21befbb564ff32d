"""The warehouse's part in a choreographed checkout (COORDINATION=choreography).

On its turn it reserves the checkout's lines, as ``POST /reservations`` does; when a later step
fails for good it voids the checkout, as ``POST /checkouts/{id}/void`` does. Both call the same
rules (``reservations``), in the transaction that records the message and the event it answers.
"""

from __future__ import annotations

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
from servicekit.problems import ProblemError
from warehouse_service import reservations
from warehouse_service.schemas import ReservationLineIn

STEP = "warehouse"


async def reserve(event: Event) -> Work:
    lines = [
        ReservationLineIn(sku=item["sku"], quantity=item["quantity"])
        for item in order_of(event)["items"]
    ]

    async def work(tx: Transaction) -> list[Event]:
        try:
            reservation, _ = await reservations.reserve(
                tx, checkout_id=event.checkout_id, lines=lines
            )
        except ProblemError as exc:
            await tx.rollback()  # all or nothing: a refusal holds no stock
            return [answer(event, REFUSED, STEP, error=refusal(exc))]
        result = {"reservation_id": str(reservation.id), "status": reservation.status}
        return [answer(event, SUCCEEDED, STEP, result=result)]

    return work


async def void(event: Event) -> Work:
    async def work(tx: Transaction) -> list[Event]:
        reservation = await reservations.void_checkout(tx, checkout_id=event.checkout_id)
        # "voided": the checkout held nothing, and now never will.
        undone = {"reservation_id": str(reservation.id), "status": reservation.status}
        return [
            answer(event, COMPENSATED, STEP, result=undone, undid=reservation.status != "voided")
        ]

    return work


def reactions(_: Database) -> dict[str, Reaction]:
    """The reactions of this step (their transactions are the reactor's, on this database)."""
    return step_reactions(STEP, act=reserve, compensate=void)
