"""HTTP routes of the warehouse: thin; the statements live in ``reservations`` and ``inventory``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from servicekit.db.statements import Transaction
from servicekit.idempotency import IdempotencyKeyHeader
from servicekit.problems import problem_responses
from servicekit.service import DatabaseDep, respond_once, uuid_or_404
from servicekit.text import NO_CONTROL_CHARACTERS, CheckoutIdPath
from warehouse_service import inventory, reservations
from warehouse_service.errors import ReservationNotFoundError
from warehouse_service.schemas import (
    InventoryPublic,
    InventoryUpdate,
    ReservationCreate,
    ReservationPage,
    ReservationPublic,
)

SkuPath = Annotated[
    str, Path(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS, examples=["SKU-001"])
]

router = APIRouter()

Change = Callable[[Transaction], Awaitable[ReservationPublic]]


def _ok(change: Change) -> Callable[[Transaction], Awaitable[tuple[int, ReservationPublic]]]:
    """An action for ``respond_once`` answering 200 with the reservation ``change`` returns."""

    async def action(tx: Transaction) -> tuple[int, ReservationPublic]:
        return 200, await change(tx)

    return action


@router.post(
    "/reservations",
    tags=["reservations"],
    summary="Reserve stock for a checkout",
    status_code=201,
    response_model=ReservationPublic,
    responses={
        **problem_responses(409, 422),
        200: {"model": ReservationPublic, "description": "The checkout's existing reservation"},
    },
)
async def create_reservation(
    body: ReservationCreate, database: DatabaseDep, idempotency_key: IdempotencyKeyHeader = None
) -> JSONResponse:
    """Hold every line's units for the checkout, or none of them (409 naming the sku that is short, or for a voided checkout)."""

    async def action(tx: Transaction) -> tuple[int, ReservationPublic]:
        reservation, created = await reservations.reserve(
            tx, checkout_id=body.checkout_id, lines=body.items
        )
        return (201 if created else 200), reservation

    return await respond_once(
        database,
        scope="POST /reservations",
        key=idempotency_key,
        action=action,
        body=body,
        location=lambda json: f"/reservations/{json['id']}",
    )


@router.post(
    "/reservations/{reservation_id}/release",
    tags=["reservations"],
    summary="Release a reservation",
    response_model=ReservationPublic,
    responses=problem_responses(404, 422),
)
async def release_reservation(
    reservation_id: str, database: DatabaseDep, idempotency_key: IdempotencyKeyHeader = None
) -> JSONResponse:
    """Return the reservation's units to stock (the saga's compensation); releasing again changes nothing."""
    parsed = uuid_or_404(reservation_id, ReservationNotFoundError, "reservation")
    return await respond_once(
        database,
        scope=f"POST /reservations/{parsed}/release",
        key=idempotency_key,
        action=_ok(partial(reservations.release, reservation_id=parsed)),
    )


@router.post(
    "/checkouts/{checkout_id}/void",
    tags=["reservations"],
    summary="Void a checkout",
    response_model=ReservationPublic,
    responses=problem_responses(422),
)
async def void_checkout(
    checkout_id: CheckoutIdPath, database: DatabaseDep, idempotency_key: IdempotencyKeyHeader = None
) -> JSONResponse:
    """Release the checkout's reservation, or, if it has none, bar it from ever reserving.

    The saga's compensation when it cannot know whether its reservation request arrived: the
    answer is the released reservation (status `released`) or a row with status `voided` and no
    items, after which `POST /reservations` for this checkout is refused with 409. Voiding again
    changes nothing more.
    """
    return await respond_once(
        database,
        scope=f"POST /checkouts/{checkout_id}/void",
        key=idempotency_key,
        action=_ok(partial(reservations.void_checkout, checkout_id=checkout_id)),
    )


@router.get(
    "/reservations/{reservation_id}",
    tags=["reservations"],
    summary="Read a reservation",
    response_model=ReservationPublic,
    responses=problem_responses(404),
)
async def read_reservation(reservation_id: str, database: DatabaseDep) -> ReservationPublic:
    """One reservation with its lines and status."""
    parsed = uuid_or_404(reservation_id, ReservationNotFoundError, "reservation")
    return await reservations.read(database, reservation_id=parsed)


@router.get(
    "/reservations",
    tags=["reservations"],
    summary="Find a checkout's reservation",
    response_model=ReservationPage,
    responses=problem_responses(422),
)
async def list_reservations(
    database: DatabaseDep,
    checkout_id: Annotated[str, Query(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS)],
) -> ReservationPage:
    """The reservation of a checkout (an empty list if it has none; status `voided` if it was voided first)."""
    found = await reservations.find_for_checkout(database, checkout_id=checkout_id)
    return ReservationPage(items=[found] if found else [])


@router.get(
    "/inventory/{sku}",
    tags=["inventory"],
    summary="Read stock of a sku",
    response_model=InventoryPublic,
    responses=problem_responses(404),
)
async def read_inventory(sku: SkuPath, database: DatabaseDep) -> InventoryPublic:
    """On-hand, reserved and available units of a sku (404 if it was never stocked)."""
    return await inventory.read(database, sku=sku)


@router.put(
    "/inventory/{sku}",
    tags=["inventory"],
    summary="Set stock of a sku",
    response_model=InventoryPublic,
    responses={
        **problem_responses(409, 422),
        201: {"model": InventoryPublic, "description": "The sku was stocked for the first time"},
    },
)
async def update_inventory(
    sku: SkuPath, body: InventoryUpdate, database: DatabaseDep
) -> JSONResponse:
    """Set the physical on-hand count (a PUT, so repeating it is harmless); 409 if below what is reserved."""
    stock, created = await database.run(
        partial(inventory.set_on_hand, sku=sku, on_hand=body.on_hand)
    )
    return JSONResponse(stock.model_dump(mode="json"), status_code=201 if created else 200)
