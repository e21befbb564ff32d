"""The warehouse's reads and inventory writes. Functions take the session, then keyword-only arguments.

Reserving, releasing and voiding (the saga's hot path) are plain SQL in ``reservations``.
"""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from warehouse_service.errors import (
    ReservationNotFoundError,
    SkuNotFoundError,
    StockBelowReservedError,
)
from warehouse_service.models import InventoryItem, Reservation, ReservationLine, utcnow
from warehouse_service.schemas import (
    HeldLine,
    InventoryPublic,
    ReservationLineIn,
    ReservationPublic,
)

DEMO_CATALOG: dict[str, int] = {
    "SKU-001": 100,  # Notebook
    "SKU-002": 50,  # Fountain pen
    "SKU-003": 20,  # Desk lamp
    "SKU-LAST": 1,  # exactly one unit: the second checkout for it fails
    "SKU-SOLDOUT": 0,  # always out of stock: shows the saga compensating
}


def merge_lines(lines: list[ReservationLineIn]) -> dict[str, int]:
    """Quantities per sku, summing repeated skus, in sku order."""
    totals: Counter[str] = Counter()
    for line in lines:
        totals[line.sku] += line.quantity
    return dict(sorted(totals.items()))


def _public(reservation: Reservation, lines: list[ReservationLine]) -> ReservationPublic:
    return ReservationPublic(
        id=reservation.id,
        checkout_id=reservation.checkout_id,
        status=reservation.status,
        items=[HeldLine(sku=line.sku, quantity=line.quantity) for line in lines],
        created_at=reservation.created_at,
        released_at=reservation.released_at,
    )


def _lines(session: Session, reservation_id: uuid.UUID) -> list[ReservationLine]:
    query = select(ReservationLine).where(ReservationLine.reservation_id == reservation_id)
    return list(session.exec(query.order_by(col(ReservationLine.sku))).all())


def find_reservation_for_checkout(
    session: Session, *, checkout_id: str
) -> ReservationPublic | None:
    """The reservation of a checkout, if it has one."""
    reservation = session.exec(
        select(Reservation).where(Reservation.checkout_id == checkout_id)
    ).first()
    if reservation is None:
        return None
    return _public(reservation, _lines(session, reservation.id))


def read_reservation(session: Session, *, reservation_id: uuid.UUID) -> ReservationPublic:
    """One reservation by id."""
    reservation = session.get(Reservation, reservation_id)
    if reservation is None:
        raise ReservationNotFoundError(f"No reservation has the id {reservation_id}.")
    return _public(reservation, _lines(session, reservation.id))


def read_inventory(session: Session, *, sku: str) -> InventoryPublic:
    """Stock of one sku."""
    item = session.get(InventoryItem, sku)
    if item is None:
        raise SkuNotFoundError(f"The sku {sku} was never stocked.")
    return InventoryPublic(
        sku=item.sku,
        on_hand=item.on_hand,
        reserved=item.reserved,
        available=item.on_hand - item.reserved,
    )


def set_on_hand(session: Session, *, sku: str, on_hand: int) -> tuple[InventoryPublic, bool]:
    """Set the physical stock of a sku, creating it; returns the stock and whether it is new."""
    item = session.get(InventoryItem, sku)
    if item is None:
        try:
            with session.begin_nested():
                session.add(InventoryItem(sku=sku, on_hand=on_hand))
        except IntegrityError:
            # A concurrent PUT stocked the sku first (PostgreSQL's read-committed readers do not
            # see its uncommitted row): set the stock it created instead of failing.
            item = session.get(InventoryItem, sku)
            if item is None:
                raise
        else:
            return read_inventory(session, sku=sku), True
    changed = session.execute(
        update(InventoryItem)
        .where(col(InventoryItem.sku) == sku)
        .where(col(InventoryItem.reserved) <= on_hand)
        .values(on_hand=on_hand, updated_at=utcnow())
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        raise StockBelowReservedError(
            f"{sku} has {item.reserved} units reserved; on_hand cannot go below that."
        )
    session.refresh(item)
    session.flush()
    return read_inventory(session, sku=sku), False


def seed_catalog(session: Session, catalog: dict[str, int]) -> None:
    """Stock every sku of ``catalog`` that was never stocked; existing stock is left as it is."""
    for sku, on_hand in catalog.items():
        if session.get(InventoryItem, sku) is None:
            session.add(InventoryItem(sku=sku, on_hand=on_hand))
    session.commit()
