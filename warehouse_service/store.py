"""Every query of the warehouse. Functions take the session, then keyword-only arguments.

Reserving is atomic under any concurrency on SQLite and PostgreSQL: each line is one conditional
``UPDATE … SET reserved = reserved + q WHERE available >= q``; the database checks and takes the
units in one statement, so two checkouts can never both get the last unit. Lines are updated in
sku order so concurrent multi-line reservations lock rows in the same order and cannot deadlock.
"""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from warehouse_service.errors import (
    CheckoutVoidedError,
    InsufficientStockError,
    ReservationConflictError,
    ReservationNotFoundError,
    SkuNotFoundError,
    StockBelowReservedError,
    UnknownSkuError,
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


def _existing_answer(existing: ReservationPublic, wanted: dict[str, int]) -> ReservationPublic:
    """What asking again for a checkout that has a reservation row gets: it, or a refusal."""
    if existing.status == "voided":
        raise CheckoutVoidedError(
            f"Checkout {existing.checkout_id} was voided: it can no longer reserve stock."
        )
    if {line.sku: line.quantity for line in existing.items} != wanted:
        raise ReservationConflictError(
            f"Checkout {existing.checkout_id} already holds reservation {existing.id} "
            "with other lines."
        )
    return existing


def reserve(
    session: Session, *, checkout_id: str, lines: list[ReservationLineIn]
) -> tuple[ReservationPublic, bool]:
    """Hold every line's units or none; returns the reservation and whether it is new.

    A checkout holds at most one reservation: asking again with the same lines returns it. A
    voided checkout (see ``void_checkout``) is refused.
    """
    wanted = merge_lines(lines)
    existing = find_reservation_for_checkout(session, checkout_id=checkout_id)
    if existing is not None:
        return _existing_answer(existing, wanted), False

    # Claim the checkout before taking any stock. A concurrent twin (PostgreSQL's read-committed
    # readers do not see this uncommitted row) waits on the unique index, then fails here and
    # answers with the reservation that won instead of taking the stock a second time.
    reservation = Reservation(checkout_id=checkout_id)
    try:
        with session.begin_nested():
            session.add(reservation)
    except IntegrityError:
        existing = find_reservation_for_checkout(session, checkout_id=checkout_id)
        if existing is None:
            raise
        return _existing_answer(existing, wanted), False

    known = set(
        session.exec(select(InventoryItem.sku).where(col(InventoryItem.sku).in_(wanted))).all()
    )
    unknown = [sku for sku in wanted if sku not in known]
    if unknown:
        raise UnknownSkuError(
            f"Unknown sku: {', '.join(unknown)}.",
            errors=[
                {
                    "loc": ["body", "items", i, "sku"],
                    "msg": f"Unknown sku {line.sku!r}",
                    "type": "unknown_sku",
                }
                for i, line in enumerate(lines)
                if line.sku in unknown
            ],
        )

    short: list[str] = []
    for sku, quantity in wanted.items():
        taken = session.execute(
            update(InventoryItem)
            .where(col(InventoryItem.sku) == sku)
            .where(col(InventoryItem.on_hand) - col(InventoryItem.reserved) >= quantity)
            .values(reserved=col(InventoryItem.reserved) + quantity, updated_at=utcnow())
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            short.append(sku)
            break  # the caller rolls back; nothing stays reserved
    if short:
        raise InsufficientStockError(f"Not enough stock for sku {short[0]}.", skus=short)

    rows = [
        ReservationLine(reservation_id=reservation.id, sku=sku, quantity=q)
        for sku, q in wanted.items()
    ]
    session.add_all(rows)
    session.flush()
    return _public(reservation, rows), True


def release(session: Session, *, reservation_id: uuid.UUID) -> ReservationPublic:
    """Return a reservation's units to stock; releasing twice changes nothing more."""
    reservation = session.get(Reservation, reservation_id)
    if reservation is None:
        raise ReservationNotFoundError(f"No reservation has the id {reservation_id}.")
    lines = _lines(session, reservation.id)
    if reservation.status == "reserved":
        # Only the transaction whose conditional UPDATE flips the status returns the units:
        # concurrent releases of one reservation must not give its stock back twice.
        claimed = session.execute(
            update(Reservation)
            .where(col(Reservation.id) == reservation_id)
            .where(col(Reservation.status) == "reserved")
            .values(status="released", released_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount == 1:  # type: ignore[attr-defined]
            for line in lines:
                session.execute(
                    update(InventoryItem)
                    .where(col(InventoryItem.sku) == line.sku)
                    .values(
                        reserved=col(InventoryItem.reserved) - line.quantity, updated_at=utcnow()
                    )
                )
        session.refresh(reservation)
    return _public(reservation, lines)


def void_checkout(session: Session, *, checkout_id: str) -> ReservationPublic:
    """Undo whatever the checkout holds and bar it from reserving later (the saga's compensation).

    With a reservation, release it (status ``released``). Without one, insert a *voided* row
    for the checkout (status ``voided``, no lines): the unique index on ``checkout_id`` makes a
    reservation request that arrives afterwards (queued in a slow network, or sent by a replica
    that lost its lease) find that row and be refused, so the caller never has to guess whether
    a call it gave up on is still on its way. Voiding again changes nothing more.
    """
    existing = find_reservation_for_checkout(session, checkout_id=checkout_id)
    if existing is None:
        tombstone = Reservation(checkout_id=checkout_id, status="voided", released_at=utcnow())
        try:
            with session.begin_nested():
                session.add(tombstone)
        except IntegrityError:
            # A reservation committed concurrently won the checkout: release it instead.
            existing = find_reservation_for_checkout(session, checkout_id=checkout_id)
            if existing is None:
                raise
        else:
            return _public(tombstone, [])
    return release(session, reservation_id=existing.id)


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
