"""Reservations of stock per checkout: every statement on ``reservation`` and ``reservation_line``.

Reserve, release and void (the saga's hot path), and the reads of the API, all in plain SQL on
the kit's transactions (``servicekit.db``). Functions take the transaction (or, for a read of one
statement, the database), then keyword-only arguments, and leave committing to whoever runs the
transaction (``servicekit.idempotency.apply_once`` through ``Database.run``). A reservation is
always read with its lines in one statement (a join), and turned into its public form by one
function, ``_public``.

Reserving is atomic under any concurrency on SQLite and PostgreSQL: each line takes its units
with one conditional ``UPDATE`` (``inventory.take``), so two checkouts can never both get the last
unit. Lines are taken in sku order so concurrent multi-line reservations lock rows in the same
order and cannot deadlock. A checkout is claimed first, by inserting its reservation row: the
unique index on ``checkout_id`` makes a concurrent twin (PostgreSQL's read-committed readers do
not see the uncommitted row) wait, then find the row that won instead of taking the stock a
second time. Releasing returns the units only from the transaction whose conditional ``UPDATE``
flips the status, so concurrent releases never give stock back twice.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime

from servicekit.db.database import Database
from servicekit.db.statements import SQL, Row, Transaction
from servicekit.db.values import optional_timestamp_of, timestamp_of, uuid_of
from servicekit.problems import ProblemError
from warehouse_service import inventory
from warehouse_service.errors import (
    CheckoutVoidedError,
    InsufficientStockError,
    ReservationConflictError,
    ReservationNotFoundError,
    UnknownSkuError,
)
from warehouse_service.models import utcnow
from warehouse_service.schemas import HeldLine, ReservationLineIn, ReservationPublic

# A reservation and its lines, one row per line (one row with no line for a voided checkout).
_READ = (
    "SELECT r.id, r.checkout_id, r.status, r.created_at, r.released_at, l.sku, l.quantity"
    " FROM reservation r LEFT JOIN reservation_line l ON l.reservation_id = r.id"
    " WHERE {} ORDER BY l.sku"
)
_BY_ID = SQL(_READ.format("r.id = :id"))
_BY_CHECKOUT = SQL(_READ.format("r.checkout_id = :checkout_id"))
_CLAIM = SQL(
    "INSERT INTO reservation (id, checkout_id, status, created_at, released_at)"
    " VALUES (:id, :checkout_id, :status, :created_at, :released_at)"
    " ON CONFLICT (checkout_id) DO NOTHING"
)
_ADD_LINE = SQL(
    "INSERT INTO reservation_line (reservation_id, sku, quantity)"
    " VALUES (:reservation_id, :sku, :quantity)"
)
_MARK_RELEASED = SQL(
    "UPDATE reservation SET status = 'released', released_at = :now"
    " WHERE id = :id AND status = 'reserved'"
)


def merge_lines(lines: list[ReservationLineIn]) -> dict[str, int]:
    """Quantities per sku, summing repeated skus, in sku order."""
    totals: Counter[str] = Counter()
    for line in lines:
        totals[line.sku] += line.quantity
    return dict(sorted(totals.items()))


def _public(rows: list[Row]) -> ReservationPublic:
    """A reservation from its rows as ``_READ`` gives them (or as written, in the same shape)."""
    reservation_id, checkout_id, status, created_at, released_at = rows[0][:5]
    return ReservationPublic(
        id=uuid_of(reservation_id),
        checkout_id=checkout_id,
        status=status,
        items=[HeldLine(sku=row[5], quantity=row[6]) for row in rows if row[5] is not None],
        created_at=timestamp_of(created_at),
        released_at=optional_timestamp_of(released_at),
    )


async def read(database: Database, *, reservation_id: uuid.UUID) -> ReservationPublic:
    """One reservation by id (one statement, a transaction of its own); 404 if there is none."""
    rows = (await database.execute(_BY_ID, {"id": reservation_id})).rows
    if not rows:
        raise ReservationNotFoundError(f"No reservation has the id {reservation_id}.")
    return _public(rows)


async def find_for_checkout(database: Database, *, checkout_id: str) -> ReservationPublic | None:
    """The reservation of a checkout, if it has one (one statement, a transaction of its own)."""
    rows = (await database.execute(_BY_CHECKOUT, {"checkout_id": checkout_id})).rows
    return _public(rows) if rows else None


async def _claim(
    tx: Transaction, *, checkout_id: str, status: str, now: datetime, lines: dict[str, int]
) -> ReservationPublic | None:
    """Insert the checkout's reservation row; None if the checkout already has one."""
    reservation_id = uuid.uuid4()
    released_at = None if status == "reserved" else now
    params = {
        "id": reservation_id,
        "checkout_id": checkout_id,
        "status": status,
        "created_at": now,
        "released_at": released_at,
    }
    if await tx.execute(_CLAIM, params) != 1:
        return None
    head = (reservation_id, checkout_id, status, now, released_at)
    rows = [(*head, sku, quantity) for sku, quantity in lines.items()]
    return _public(rows or [(*head, None, None)])


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


async def _refuse(
    tx: Transaction, lines: list[ReservationLineIn], wanted: dict[str, int], sku: str
) -> ProblemError:
    """The refusal when taking ``sku`` failed: 422 if any sku is unknown, else 409 for ``sku``."""
    known = await inventory.known(tx, skus=wanted)
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


async def reserve(
    tx: Transaction, *, checkout_id: str, lines: list[ReservationLineIn]
) -> tuple[ReservationPublic, bool]:
    """Hold every line's units or none; returns the reservation and whether it is new.

    A checkout holds at most one reservation: asking again with the same lines returns it. A
    voided checkout (see ``void_checkout``) is refused. Refusals raise, and the transaction is
    rolled back: nothing stays reserved.
    """
    wanted = merge_lines(lines)
    now = utcnow()
    claimed = await _claim(tx, checkout_id=checkout_id, status="reserved", now=now, lines=wanted)
    if claimed is None:
        rows = await tx.all(_BY_CHECKOUT, {"checkout_id": checkout_id})
        if not rows:
            raise RuntimeError("claiming a checkout failed, yet it has no reservation row")
        return _existing_answer(_public(rows), wanted), False

    for sku, quantity in wanted.items():
        # An unknown sku takes nothing either: told apart from a short one once, on refusal.
        if not await inventory.take(tx, sku=sku, quantity=quantity, now=now):
            raise await _refuse(tx, lines, wanted, sku)
    await tx.execute_many(
        _ADD_LINE,
        [
            {"reservation_id": claimed.id, "sku": sku, "quantity": quantity}
            for sku, quantity in wanted.items()
        ],
    )
    return claimed, True


async def _release(tx: Transaction, rows: list[Row]) -> ReservationPublic:
    """Release the reservation ``rows`` show (as ``_READ`` gives them), unless it is not held."""
    if rows[0][2] != "reserved":
        return _public(rows)
    reservation_id, now = uuid_of(rows[0][0]), utcnow()
    if await tx.execute(_MARK_RELEASED, {"id": reservation_id, "now": now}) != 1:
        # Released concurrently: answer with the reservation as that release left it.
        return _public(await tx.all(_BY_ID, {"id": reservation_id}))
    for row in rows:
        if row[5] is not None:
            await inventory.give_back(tx, sku=row[5], quantity=row[6], now=now)
    return _public([(*row[:2], "released", row[3], now, *row[5:]) for row in rows])


async def release(tx: Transaction, *, reservation_id: uuid.UUID) -> ReservationPublic:
    """Return a reservation's units to stock; releasing twice changes nothing more."""
    rows = await tx.all(_BY_ID, {"id": reservation_id})
    if not rows:
        raise ReservationNotFoundError(f"No reservation has the id {reservation_id}.")
    return await _release(tx, rows)


async def void_checkout(tx: Transaction, *, checkout_id: str) -> ReservationPublic:
    """Undo whatever the checkout holds and bar it from reserving later (the saga's compensation).

    With a reservation, release it (status ``released``). Without one, insert a *voided* row
    for the checkout (status ``voided``, no lines): the unique index on ``checkout_id`` makes a
    reservation request that arrives afterwards (queued in a slow network, or sent by a replica
    that lost its lease) find that row and be refused, so the caller never has to guess whether
    a call it gave up on is still on its way. Voiding again changes nothing more.
    """
    rows = await tx.all(_BY_CHECKOUT, {"checkout_id": checkout_id})
    if not rows:
        voided = await _claim(tx, checkout_id=checkout_id, status="voided", now=utcnow(), lines={})
        if voided is not None:
            return voided
        # A reservation committed concurrently won the checkout: release it instead.
        rows = await tx.all(_BY_CHECKOUT, {"checkout_id": checkout_id})
        if not rows:
            raise RuntimeError("voiding a checkout failed, yet it has no reservation row")
    return await _release(tx, rows)
