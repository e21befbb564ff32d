"""Stock per sku: every statement on ``inventory_item``, reads and writes, in plain SQL.

Functions take the transaction (or, for a read of one statement, the database), then keyword-only
arguments, and leave committing to whoever runs the transaction (``Database.run``).

How it stays correct under concurrency, on SQLite and PostgreSQL alike:

- **Taking units** (``take``) is one conditional ``UPDATE … SET reserved = reserved + q WHERE
  on_hand - reserved >= q``: the database checks and takes the units in one statement, so two
  checkouts can never both get the last unit. Giving them back (``give_back``) is the reverse.
- **Setting on_hand** (``set_on_hand``, the PUT) first inserts the sku with ``ON CONFLICT DO
  NOTHING``: a concurrent PUT stocking the same new sku (PostgreSQL's read-committed readers do
  not see its uncommitted row) makes this insert wait for it, then do nothing, so exactly one
  PUT creates the sku (201) and none fails. Otherwise the count is set by a conditional
  ``UPDATE … WHERE reserved <= :on_hand``, so it never goes below what concurrent reservations
  hold, whatever they took since anything was read.
- **The demo catalog** (``seed``) inserts with ``ON CONFLICT DO NOTHING`` too: seeding again, or
  over stock a person set, leaves existing stock alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from servicekit.db.database import Database
from servicekit.db.statements import SQL, Row, Transaction
from warehouse_service.errors import SkuNotFoundError, StockBelowReservedError
from warehouse_service.models import utcnow
from warehouse_service.schemas import InventoryPublic

DEMO_CATALOG: dict[str, int] = {
    "SKU-001": 100,  # Notebook
    "SKU-002": 50,  # Fountain pen
    "SKU-003": 20,  # Desk lamp
    "SKU-LAST": 1,  # exactly one unit: the second checkout for it fails
    "SKU-SOLDOUT": 0,  # always out of stock: shows the saga compensating
}

_READ = SQL("SELECT sku, on_hand, reserved FROM inventory_item WHERE sku = :sku")
_STOCK = SQL(
    "INSERT INTO inventory_item (sku, on_hand, reserved, updated_at)"
    " VALUES (:sku, :on_hand, 0, :now) ON CONFLICT (sku) DO NOTHING"
)
_SET_ON_HAND = SQL(
    "UPDATE inventory_item SET on_hand = :on_hand, updated_at = :now"
    " WHERE sku = :sku AND reserved <= :on_hand RETURNING sku, on_hand, reserved"
)
_TAKE = SQL(
    "UPDATE inventory_item SET reserved = reserved + :quantity, updated_at = :now"
    " WHERE sku = :sku AND on_hand - reserved >= :quantity"
)
_GIVE_BACK = SQL(
    "UPDATE inventory_item SET reserved = reserved - :quantity, updated_at = :now WHERE sku = :sku"
)


def _public(row: Row) -> InventoryPublic:
    sku, on_hand, reserved = row
    return InventoryPublic(
        sku=sku, on_hand=on_hand, reserved=reserved, available=on_hand - reserved
    )


def _found(row: Row | None, sku: str) -> InventoryPublic:
    if row is None:
        raise SkuNotFoundError(f"The sku {sku} was never stocked.")
    return _public(row)


async def read(database: Database, *, sku: str) -> InventoryPublic:
    """Stock of one sku (one statement, a transaction of its own); 404 if never stocked."""
    return _found((await database.execute(_READ, {"sku": sku})).first(), sku)


async def set_on_hand(tx: Transaction, *, sku: str, on_hand: int) -> tuple[InventoryPublic, bool]:
    """Set the physical stock of a sku, creating it; returns the stock and whether it is new.

    409 if ``on_hand`` is below what is reserved; nothing is changed then.
    """
    now = utcnow()
    if await tx.execute(_STOCK, {"sku": sku, "on_hand": on_hand, "now": now}) == 1:
        return _public((sku, on_hand, 0)), True
    row = await tx.one(_SET_ON_HAND, {"sku": sku, "on_hand": on_hand, "now": now})
    if row is None:
        reserved = _found(await tx.one(_READ, {"sku": sku}), sku).reserved
        raise StockBelowReservedError(
            f"{sku} has {reserved} units reserved; on_hand cannot go below that."
        )
    return _public(row), False


async def take(tx: Transaction, *, sku: str, quantity: int, now: datetime) -> bool:
    """Reserve ``quantity`` units of ``sku`` if that many are available; whether it did.

    An unknown sku takes nothing either (``known`` tells the two apart).
    """
    return await tx.execute(_TAKE, {"sku": sku, "quantity": quantity, "now": now}) == 1


async def give_back(tx: Transaction, *, sku: str, quantity: int, now: datetime) -> None:
    """Return ``quantity`` reserved units of ``sku`` to what is available."""
    await tx.execute(_GIVE_BACK, {"sku": sku, "quantity": quantity, "now": now})


async def known(tx: Transaction, *, skus: Iterable[str]) -> set[str]:
    """Which of ``skus`` were ever stocked."""
    names = {f"s{i}": sku for i, sku in enumerate(skus)}
    if not names:
        return set()
    listed = ", ".join(f":{name}" for name in names)
    rows = await tx.all(SQL(f"SELECT sku FROM inventory_item WHERE sku IN ({listed})"), names)
    return {row[0] for row in rows}


async def seed(tx: Transaction, *, catalog: dict[str, int]) -> None:
    """Stock every sku of ``catalog`` that was never stocked; existing stock is left as it is."""
    now = utcnow()
    await tx.execute_many(
        _STOCK, [{"sku": sku, "on_hand": on_hand, "now": now} for sku, on_hand in catalog.items()]
    )
