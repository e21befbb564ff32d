"""HTTP routes of the warehouse: thin, every query lives in ``store``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from servicekit.db import SessionDep, read_only
from servicekit.idempotency import IdempotencyKeyHeader, fingerprint, run_once
from servicekit.problems import problem_responses
from servicekit.sql import Transaction
from servicekit.text import NO_CONTROL_CHARACTERS, CheckoutIdPath
from warehouse_service import reservations, store
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


def _reservation_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ReservationNotFoundError(f"No reservation has the id {raw}.") from None


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
    body: ReservationCreate, request: Request, idempotency_key: IdempotencyKeyHeader = None
) -> JSONResponse:
    """Hold every line's units for the checkout, or none of them (409 naming the sku that is short, or for a voided checkout)."""

    def action(tx: Transaction) -> tuple[int, object]:
        reservation, created = reservations.reserve(
            tx, checkout_id=body.checkout_id, lines=body.items
        )
        return (201 if created else 200), reservation.model_dump(mode="json")

    result = await run_once(
        request,
        scope="POST /reservations",
        key=idempotency_key,
        digest=fingerprint(body.model_dump(mode="json")),
        action=action,
    )
    return result.to_response({"Location": f"/reservations/{result.body['id']}"})


@router.post(
    "/reservations/{reservation_id}/release",
    tags=["reservations"],
    summary="Release a reservation",
    response_model=ReservationPublic,
    responses=problem_responses(404, 422),
)
async def release_reservation(
    reservation_id: str, request: Request, idempotency_key: IdempotencyKeyHeader = None
) -> JSONResponse:
    """Return the reservation's units to stock (the saga's compensation); releasing again changes nothing."""
    parsed = _reservation_id(reservation_id)

    def action(tx: Transaction) -> tuple[int, object]:
        return 200, reservations.release(tx, reservation_id=parsed).model_dump(mode="json")

    scope = f"POST /reservations/{parsed}/release"
    return (await run_once(request, scope=scope, key=idempotency_key, action=action)).to_response()


@router.post(
    "/checkouts/{checkout_id}/void",
    tags=["reservations"],
    summary="Void a checkout",
    response_model=ReservationPublic,
    responses=problem_responses(422),
)
async def void_checkout(
    checkout_id: CheckoutIdPath, request: Request, idempotency_key: IdempotencyKeyHeader = None
) -> JSONResponse:
    """Release the checkout's reservation, or, if it has none, bar it from ever reserving.

    The saga's compensation when it cannot know whether its reservation request arrived: the
    answer is the released reservation (status `released`) or a row with status `voided` and no
    items, after which `POST /reservations` for this checkout is refused with 409. Voiding again
    changes nothing more.
    """

    def action(tx: Transaction) -> tuple[int, object]:
        return 200, reservations.void_checkout(tx, checkout_id=checkout_id).model_dump(mode="json")

    scope = f"POST /checkouts/{checkout_id}/void"
    return (await run_once(request, scope=scope, key=idempotency_key, action=action)).to_response()


@router.get(
    "/reservations/{reservation_id}",
    tags=["reservations"],
    summary="Read a reservation",
    response_model=ReservationPublic,
    responses=problem_responses(404),
)
def read_reservation(reservation_id: str, session: SessionDep) -> ReservationPublic:
    """One reservation with its lines and status."""
    with read_only(session):
        return store.read_reservation(session, reservation_id=_reservation_id(reservation_id))


@router.get(
    "/reservations",
    tags=["reservations"],
    summary="Find a checkout's reservation",
    response_model=ReservationPage,
    responses=problem_responses(422),
)
def list_reservations(
    session: SessionDep,
    checkout_id: Annotated[str, Query(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS)],
) -> ReservationPage:
    """The reservation of a checkout (an empty list if it has none; status `voided` if it was voided first)."""
    with read_only(session):
        found = store.find_reservation_for_checkout(session, checkout_id=checkout_id)
    return ReservationPage(items=[found] if found else [])


@router.get(
    "/inventory/{sku}",
    tags=["inventory"],
    summary="Read stock of a sku",
    response_model=InventoryPublic,
    responses=problem_responses(404),
)
def read_inventory(sku: SkuPath, session: SessionDep) -> InventoryPublic:
    """On-hand, reserved and available units of a sku (404 if it was never stocked)."""
    with read_only(session):
        return store.read_inventory(session, sku=sku)


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
def update_inventory(sku: SkuPath, body: InventoryUpdate, session: SessionDep) -> JSONResponse:
    """Set the physical on-hand count (a PUT, so repeating it is harmless); 409 if below what is reserved."""
    try:
        inventory, created = store.set_on_hand(session, sku=sku, on_hand=body.on_hand)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return JSONResponse(inventory.model_dump(mode="json"), status_code=201 if created else 200)
