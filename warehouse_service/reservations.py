"""The warehouse's mutating requests (reserve, release, void) as plain SQL on one transaction.

The hot path of the saga, so it skips the ORM (see ``servicekit.sql``); the reads of the API and
the inventory PUT stay in ``store``. Functions take the transaction, then keyword-only arguments,
and leave committing to the caller (``servicekit.idempotency.apply_once``).

Reserving is atomic under any concurrency on SQLite and PostgreSQL: each line is one conditional
``UPDATE … SET reserved = reserved + q WHERE on_hand - reserved >= q``; the database checks and
takes the units in one statement, so two checkouts can never both get the last unit. Lines are
updated in sku order so concurrent multi-line reservations lock rows in the same order and cannot
deadlock. A checkout is claimed first, by inserting its reservation row: the unique index on
``checkout_id`` makes a concurrent twin (PostgreSQL's read-committed readers do not see the
uncommitted row) wait, then find the row that won instead of taking the stock a second time.
"""

from __future__ import annotations

import uuid
from typing import Any

from servicekit.problems import ProblemError
from servicekit.sql import SQL, Transaction
from warehouse_service.errors import (
    CheckoutVoidedError,
    InsufficientStockError,
    ReservationConflictError,
    ReservationNotFoundError,
    UnknownSkuError,
)
from warehouse_service.models import utcnow
from warehouse_service.schemas import HeldLine, ReservationLineIn, ReservationPublic
from warehouse_service.store import merge_lines

_CLAIM = SQL(
    "INSERT INTO reservation (id, checkout_id, status, created_at, released_at)"
    " VALUES (:id, :checkout_id, :status, :created_at, :released_at)"
    " ON CONFLICT (checkout_id) DO NOTHING"
)
_BY_CHECKOUT = SQL(
    "SELECT id, checkout_id, status, created_at, released_at FROM reservation"
    " WHERE checkout_id = :checkout_id"
)
_BY_ID = SQL(
    "SELECT id, checkout_id, status, created_at, released_at FROM reservation WHERE id = :id"
)
_LINES = SQL(
    "SELECT sku, quantity FROM reservation_line WHERE reservation_id = :reservation_id ORDER BY sku"
)
_TAKE = SQL(
    "UPDATE inventory_item SET reserved = reserved + :quantity, updated_at = :now"
    " WHERE sku = :sku AND on_hand - reserved >= :quantity"
)
_GIVE_BACK = SQL(
    "UPDATE inventory_item SET reserved = reserved - :quantity, updated_at = :now WHERE sku = :sku"
)
_ADD_LINE = SQL(
    "INSERT INTO reservation_line (reservation_id, sku, quantity)"
    " VALUES (:reservation_id, :sku, :quantity)"
)
_MARK_RELEASED = SQL(
    "UPDATE reservation SET status = 'released', released_at = :now"
    " WHERE id = :id AND status = 'reserved'"
)


def _public(tx: Transaction, row: Any, lines: list[tuple[str, int]]) -> ReservationPublic:
    return ReservationPublic(
        id=tx.uuid_of(row[0]),
        checkout_id=row[1],
        status=row[2],
        items=[HeldLine(sku=sku, quantity=quantity) for sku, quantity in lines],
        created_at=tx.timestamp_of(row[3]),
        released_at=tx.optional_timestamp_of(row[4]),
    )


def _lines(tx: Transaction, reservation_id: Any) -> list[tuple[str, int]]:
    return [(sku, quantity) for sku, quantity in tx.all(_LINES, {"reservation_id": reservation_id})]


def _existing(tx: Transaction, *, checkout_id: str) -> ReservationPublic | None:
    row = tx.one(_BY_CHECKOUT, {"checkout_id": checkout_id})
    return None if row is None else _public(tx, row, _lines(tx, row[0]))


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


def _refuse(
    tx: Transaction, lines: list[ReservationLineIn], wanted: dict[str, int], sku: str
) -> ProblemError:
    """The refusal when taking ``sku`` failed: 422 if any sku is unknown, else 409 for ``sku``."""
    names = {f"s{i}": name for i, name in enumerate(wanted)}
    known_skus = SQL(
        "SELECT sku FROM inventory_item WHERE sku IN (" + ", ".join(f":{n}" for n in names) + ")"
    )
    known = {row[0] for row in tx.all(known_skus, names)}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        return UnknownSkuError(
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
    return InsufficientStockError(f"Not enough stock for sku {sku}.", skus=[sku])


def reserve(
    tx: Transaction, *, checkout_id: str, lines: list[ReservationLineIn]
) -> tuple[ReservationPublic, bool]:
    """Hold every line's units or none; returns the reservation and whether it is new.

    A checkout holds at most one reservation: asking again with the same lines returns it. A
    voided checkout (see ``void_checkout``) is refused. Refusals leave the transaction for the
    caller to roll back: nothing stays reserved.
    """
    wanted = merge_lines(lines)
    reservation_id = uuid.uuid4()
    now = utcnow()
    row = (tx.uuid(reservation_id), checkout_id, "reserved", now, None)
    claimed = tx.rowcount(
        _CLAIM,
        {
            "id": row[0],
            "checkout_id": checkout_id,
            "status": "reserved",
            "created_at": tx.timestamp(now),
            "released_at": None,
        },
    )
    if claimed != 1:
        existing = _existing(tx, checkout_id=checkout_id)
        if existing is None:
            raise RuntimeError("claiming a checkout failed, yet it has no reservation row")
        return _existing_answer(existing, wanted), False

    stamp = tx.timestamp(now)
    for sku, quantity in wanted.items():
        # An unknown sku takes nothing either: told apart from a short one once, on refusal.
        if tx.rowcount(_TAKE, {"sku": sku, "quantity": quantity, "now": stamp}) != 1:
            raise _refuse(tx, lines, wanted, sku)
    for sku, quantity in wanted.items():
        tx.execute(_ADD_LINE, {"reservation_id": row[0], "sku": sku, "quantity": quantity})
    return _public(tx, row, list(wanted.items())), True


def _release(tx: Transaction, row: Any) -> ReservationPublic:
    lines = _lines(tx, row[0])
    if row[2] == "reserved":
        # Only the transaction whose conditional UPDATE flips the status returns the units:
        # concurrent releases of one reservation must not give its stock back twice.
        now = utcnow()
        stamp = tx.timestamp(now)
        if tx.rowcount(_MARK_RELEASED, {"id": row[0], "now": stamp}) == 1:
            for sku, quantity in lines:
                tx.execute(_GIVE_BACK, {"sku": sku, "quantity": quantity, "now": stamp})
            row = (row[0], row[1], "released", row[3], now)
        else:  # released concurrently: answer with the row as that release left it
            row = tx.one(_BY_ID, {"id": row[0]})
    return _public(tx, row, lines)


def release(tx: Transaction, *, reservation_id: uuid.UUID) -> ReservationPublic:
    """Return a reservation's units to stock; releasing twice changes nothing more."""
    row = tx.one(_BY_ID, {"id": tx.uuid(reservation_id)})
    if row is None:
        raise ReservationNotFoundError(f"No reservation has the id {reservation_id}.")
    return _release(tx, row)


def void_checkout(tx: Transaction, *, checkout_id: str) -> ReservationPublic:
    """Undo whatever the checkout holds and bar it from reserving later (the saga's compensation).

    With a reservation, release it (status ``released``). Without one, insert a *voided* row
    for the checkout (status ``voided``, no lines): the unique index on ``checkout_id`` makes a
    reservation request that arrives afterwards (queued in a slow network, or sent by a replica
    that lost its lease) find that row and be refused, so the caller never has to guess whether
    a call it gave up on is still on its way. Voiding again changes nothing more.
    """
    row = tx.one(_BY_CHECKOUT, {"checkout_id": checkout_id})
    if row is None:
        now = utcnow()
        tombstone = (tx.uuid(uuid.uuid4()), checkout_id, "voided", now, now)
        inserted = tx.rowcount(
            _CLAIM,
            {
                "id": tombstone[0],
                "checkout_id": checkout_id,
                "status": "voided",
                "created_at": tx.timestamp(now),
                "released_at": tx.timestamp(now),
            },
        )
        if inserted == 1:
            return _public(tx, tombstone, [])
        # A reservation committed concurrently won the checkout: release it instead.
        row = tx.one(_BY_CHECKOUT, {"checkout_id": checkout_id})
        if row is None:
            raise RuntimeError("voiding a checkout failed, yet it has no reservation row")
    return _release(tx, row)
