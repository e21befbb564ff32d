"""The rewards service's mutating requests (credit, reverse, void) as plain SQL on one transaction.

Every statement on the ledger (``point_transaction``), the ``account`` balances and the
``voided_checkout`` rows, reads included, in plain SQL on the kit's ``Database``. The writes take
the transaction, then keyword-only arguments; the database that runs it commits it.

Exactly-once under any concurrency, on SQLite and PostgreSQL, with or without an Idempotency-Key:

- the ledger row is inserted with ``ON CONFLICT DO NOTHING``; when a unique constraint says it
  exists (the same credit or reversal committed by a concurrent twin) nothing is inserted, and the
  twin's row is read and returned;
- the balance moves by one atomic ``UPDATE account SET balance = balance + :points`` in the same
  transaction as the ledger row, so concurrent credits never lose an update;
- the account is created with ``INSERT … ON CONFLICT DO NOTHING``, so concurrent first credits of
  one customer do not collide.

Every writer touches rows in the same order (account key, ledger row, account balance), so
concurrent transactions cannot deadlock.

Credits and voids of one checkout are serialised: on PostgreSQL by a transaction-level advisory
lock on the checkout id, taken first; on SQLite every write transaction begins IMMEDIATE, which
already serialises writers. So a credit either commits before a void (and is reversed by it) or
sees the void and is refused: never both missed.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Literal

from rewards_service.errors import (
    AccountNotFoundError,
    CheckoutVoidedError,
    CreditConflictError,
    NotReversibleError,
    TransactionNotFoundError,
)
from rewards_service.models import utcnow
from rewards_service.schemas import AccountPublic, CheckoutVoidPublic, TransactionPublic
from servicekit.db.database import Database
from servicekit.db.statements import SQL, Transaction
from servicekit.db.values import optional_uuid_of, timestamp_of, uuid_of

_COLUMNS = "id, customer_id, checkout_id, kind, points, reverses_id, created_at"
_LOCK = SQL("SELECT pg_advisory_xact_lock(:key)")
_CREDIT_OF = SQL(
    f"SELECT {_COLUMNS} FROM point_transaction"
    " WHERE customer_id = :customer_id AND checkout_id = :checkout_id AND kind = 'credit'"
)
_BY_ID = SQL(f"SELECT {_COLUMNS} FROM point_transaction WHERE id = :id")
_REVERSAL_OF = SQL(f"SELECT {_COLUMNS} FROM point_transaction WHERE reverses_id = :credit_id")
_CREDITS_OF_CHECKOUT = SQL(
    f"SELECT {_COLUMNS} FROM point_transaction WHERE checkout_id = :checkout_id"
    " AND kind = 'credit' ORDER BY created_at, id"
)
_INSERT = SQL(
    f"INSERT INTO point_transaction ({_COLUMNS}) VALUES (:id, :customer_id, :checkout_id, :kind,"
    " :points, :reverses_id, :created_at) ON CONFLICT DO NOTHING"
)
_ENSURE_ACCOUNT = SQL(
    "INSERT INTO account (customer_id, balance, created_at, updated_at)"
    " VALUES (:customer_id, 0, :now, :now) ON CONFLICT (customer_id) DO NOTHING"
)
_ADD_TO_BALANCE = SQL(
    "UPDATE account SET balance = balance + :points, updated_at = :now"
    " WHERE customer_id = :customer_id"
)
_VOIDED_AT = SQL("SELECT voided_at FROM voided_checkout WHERE checkout_id = :checkout_id")
_ADD_VOIDED = SQL(
    "INSERT INTO voided_checkout (checkout_id, voided_at) VALUES (:checkout_id, :voided_at)"
)


def _public(row: Any) -> TransactionPublic:
    kind: Literal["credit", "reversal"] = "credit" if row[3] == "credit" else "reversal"
    return TransactionPublic(
        id=uuid_of(row[0]),
        customer_id=row[1],
        checkout_id=row[2],
        kind=kind,
        points=row[4],
        reverses_id=optional_uuid_of(row[5]),
        created_at=timestamp_of(row[6]),
    )


async def _lock_checkout(tx: Transaction, *, checkout_id: str) -> None:
    """Serialise this transaction with every other credit or void of the checkout (PostgreSQL)."""
    if not tx.postgres:
        return  # SQLite: BEGIN IMMEDIATE already made this the only writer
    digest = hashlib.sha256(f"rewards checkout {checkout_id}".encode()).digest()
    await tx.execute(_LOCK, {"key": int.from_bytes(digest[:8], "big", signed=True)})


async def _insert(tx: Transaction, row: tuple[Any, ...]) -> bool:
    """Insert a ledger row unless a unique constraint says it exists; returns whether it did."""
    names = ("id", "customer_id", "checkout_id", "kind", "points", "reverses_id")
    values = dict(zip(names, row, strict=False))
    values["created_at"] = row[6]
    return await tx.execute(_INSERT, values) == 1


async def _add_to_balance(tx: Transaction, *, customer_id: str, points: int, now: Any) -> None:
    """Move the balance by ``points`` in one statement: no read-modify-write race."""
    await tx.execute(_ADD_TO_BALANCE, {"customer_id": customer_id, "points": points, "now": now})


async def credit(
    tx: Transaction, *, customer_id: str, checkout_id: str, points: int
) -> tuple[TransactionPublic, bool]:
    """Credit ``points`` for a checkout, creating the account; returns the credit and whether it is new.

    A checkout is credited at most once per customer: asking again with the same points returns
    the first credit; with other points it is a 409. A voided checkout is refused (409).
    """
    await _lock_checkout(tx, checkout_id=checkout_id)
    key = {"customer_id": customer_id, "checkout_id": checkout_id}
    existing = await tx.one(_CREDIT_OF, key)
    if existing is None:
        if await tx.one(_VOIDED_AT, {"checkout_id": checkout_id}) is not None:
            raise CheckoutVoidedError(
                f"Checkout {checkout_id} was voided: it can no longer earn points."
            )
        now = utcnow()
        stamp = now
        await tx.execute(_ENSURE_ACCOUNT, {"customer_id": customer_id, "now": stamp})
        row = (uuid.uuid4(), customer_id, checkout_id, "credit", points, None, now)
        if await _insert(tx, row):
            await _add_to_balance(tx, customer_id=customer_id, points=points, now=stamp)
            return _public(row), True
        existing = await tx.one(_CREDIT_OF, key)
        if existing is None:  # the conflict was not the credit's natural key
            raise RuntimeError("inserting a credit failed on a constraint other than its key")
    if existing[4] != points:
        raise CreditConflictError(
            f"Checkout {checkout_id} was already credited to {customer_id} with "
            f"{existing[4]} points, not {points}.",
            transaction_id=str(uuid_of(existing[0])),
        )
    return _public(existing), False


async def _reverse(tx: Transaction, original: Any) -> TransactionPublic:
    if original[3] != "credit":
        raise NotReversibleError(
            f"Transaction {uuid_of(original[0])} is a reversal; only credits can be reversed."
        )
    existing = await tx.one(_REVERSAL_OF, {"credit_id": original[0]})
    if existing is not None:
        return _public(existing)
    customer_id, points = original[1], original[4]
    now = utcnow()
    row = (uuid.uuid4(), customer_id, original[2], "reversal", -points, original[0], now)
    if await _insert(tx, row):
        await _add_to_balance(tx, customer_id=customer_id, points=-points, now=now)
        return _public(row)
    existing = await tx.one(_REVERSAL_OF, {"credit_id": original[0]})
    if existing is None:
        raise RuntimeError("inserting a reversal failed on a constraint other than its key")
    return _public(existing)


async def reverse(tx: Transaction, *, transaction_id: uuid.UUID) -> TransactionPublic:
    """Take back a credit's points; reversing it again returns the first reversal."""
    original = await tx.one(_BY_ID, {"id": transaction_id})
    if original is None:
        raise TransactionNotFoundError(f"No transaction has the id {transaction_id}.")
    return await _reverse(tx, original)


async def void_checkout(tx: Transaction, *, checkout_id: str) -> CheckoutVoidPublic:
    """Reverse the checkout's credits and refuse any credit for it later (the saga's compensation).

    The voided row is what makes a credit that arrives afterwards (queued in a slow network, or
    sent by a replica that lost its lease) be refused, so the caller never has to guess whether
    a call it gave up on is still on its way. Voiding again changes nothing more.
    """
    await _lock_checkout(tx, checkout_id=checkout_id)
    voided = await tx.one(_VOIDED_AT, {"checkout_id": checkout_id})
    if voided is None:
        voided_at = utcnow()
        await tx.execute(_ADD_VOIDED, {"checkout_id": checkout_id, "voided_at": voided_at})
    else:
        voided_at = timestamp_of(voided[0])
    credits = await tx.all(_CREDITS_OF_CHECKOUT, {"checkout_id": checkout_id})
    reversals = [await _reverse(tx, row) for row in credits]
    return CheckoutVoidPublic(checkout_id=checkout_id, voided_at=voided_at, reversals=reversals)


# --- reads ---------------------------------------------------------------------------------

_ACCOUNT = SQL("SELECT customer_id, balance FROM account WHERE customer_id = :customer_id")
_OF_ACCOUNT = SQL(
    f"SELECT {_COLUMNS} FROM point_transaction WHERE customer_id = :customer_id"
    " ORDER BY created_at DESC, id DESC LIMIT :limit"
)
_OF_CHECKOUT = SQL(
    f"SELECT {_COLUMNS} FROM point_transaction WHERE checkout_id = :checkout_id"
    " ORDER BY created_at DESC, id DESC"
)


async def read_account(database: Database, *, customer_id: str) -> AccountPublic:
    """The balance of a customer's account."""
    row = (await database.execute(_ACCOUNT, {"customer_id": customer_id})).first()
    if row is None:
        raise AccountNotFoundError(f"The customer {customer_id} was never credited.")
    return AccountPublic(customer_id=row[0], balance=row[1])


async def read_transaction(database: Database, *, transaction_id: uuid.UUID) -> TransactionPublic:
    """One ledger entry by id."""
    row = (await database.execute(_BY_ID, {"id": transaction_id})).first()
    if row is None:
        raise TransactionNotFoundError(f"No transaction has the id {transaction_id}.")
    return _public(row)


async def list_account_transactions(
    database: Database, *, customer_id: str, limit: int
) -> list[TransactionPublic]:
    """The newest ``limit`` ledger entries of an account (404 if it does not exist)."""

    async def work(tx: Transaction) -> list[TransactionPublic]:
        if await tx.one(_ACCOUNT, {"customer_id": customer_id}) is None:
            raise AccountNotFoundError(f"The customer {customer_id} was never credited.")
        rows = await tx.all(_OF_ACCOUNT, {"customer_id": customer_id, "limit": limit})
        return [_public(row) for row in rows]

    return await database.run(work, read_only=True)


async def list_checkout_transactions(
    database: Database, *, checkout_id: str
) -> list[TransactionPublic]:
    """Every ledger entry of a checkout, newest first."""
    rows = (await database.execute(_OF_CHECKOUT, {"checkout_id": checkout_id})).rows
    return [_public(row) for row in rows]
