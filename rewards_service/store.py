"""Every query of the rewards service. Functions take the session, then keyword-only arguments.

Exactly-once under any concurrency, on SQLite and PostgreSQL, with or without an Idempotency-Key:

- the ledger row is inserted inside a SAVEPOINT; a unique violation (the same credit or reversal
  committed by a concurrent twin) rolls back only that row, and the twin's row is read and returned;
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
from typing import Literal

from sqlalchemy import text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from rewards_service.errors import (
    AccountNotFoundError,
    CheckoutVoidedError,
    CreditConflictError,
    NotReversibleError,
    TransactionNotFoundError,
)
from rewards_service.models import Account, PointTransaction, VoidedCheckout, utcnow
from rewards_service.schemas import AccountPublic, CheckoutVoidPublic, TransactionPublic


def _public(row: PointTransaction) -> TransactionPublic:
    kind: Literal["credit", "reversal"] = "credit" if row.kind == "credit" else "reversal"
    return TransactionPublic(
        id=row.id,
        customer_id=row.customer_id,
        checkout_id=row.checkout_id,
        kind=kind,
        points=row.points,
        reverses_id=row.reverses_id,
        created_at=row.created_at,
    )


def _lock_checkout(session: Session, *, checkout_id: str) -> None:
    """Serialise this transaction with every other credit or void of the checkout (PostgreSQL)."""
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite: BEGIN IMMEDIATE already made this the only writer
    digest = hashlib.sha256(f"rewards checkout {checkout_id}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _ensure_account(session: Session, *, customer_id: str) -> None:
    """Create the customer's account with a zero balance unless it exists."""
    now = utcnow()
    values = {"customer_id": customer_id, "balance": 0, "created_at": now, "updated_at": now}
    if session.get_bind().dialect.name == "postgresql":
        pg_statement = postgresql.insert(Account).values(**values)
        session.execute(pg_statement.on_conflict_do_nothing(index_elements=["customer_id"]))
    else:
        lite_statement = sqlite.insert(Account).values(**values)
        session.execute(lite_statement.on_conflict_do_nothing(index_elements=["customer_id"]))


def _add_to_balance(session: Session, *, customer_id: str, points: int) -> None:
    """Move the balance by ``points`` in one statement: no read-modify-write race."""
    session.execute(
        update(Account)
        .where(col(Account.customer_id) == customer_id)
        .values(balance=col(Account.balance) + points, updated_at=utcnow())
    )


def _insert_once(session: Session, row: PointTransaction) -> bool:
    """Insert ``row`` unless a unique constraint says it already exists; returns whether it did."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return False
    return True


def _find_credit(
    session: Session, *, customer_id: str, checkout_id: str
) -> PointTransaction | None:
    return session.exec(
        select(PointTransaction)
        .where(PointTransaction.customer_id == customer_id)
        .where(PointTransaction.checkout_id == checkout_id)
        .where(PointTransaction.kind == "credit")
    ).first()


def _find_reversal(session: Session, *, credit_id: uuid.UUID) -> PointTransaction | None:
    return session.exec(
        select(PointTransaction).where(PointTransaction.reverses_id == credit_id)
    ).first()


def credit(
    session: Session, *, customer_id: str, checkout_id: str, points: int
) -> tuple[TransactionPublic, bool]:
    """Credit ``points`` for a checkout, creating the account; returns the credit and whether it is new.

    A checkout is credited at most once per customer: asking again with the same points returns
    the first credit; with other points it is a 409. A voided checkout is refused (409).
    """
    _lock_checkout(session, checkout_id=checkout_id)
    existing = _find_credit(session, customer_id=customer_id, checkout_id=checkout_id)
    if existing is None:
        if session.get(VoidedCheckout, checkout_id) is not None:
            raise CheckoutVoidedError(
                f"Checkout {checkout_id} was voided: it can no longer earn points."
            )
        _ensure_account(session, customer_id=customer_id)
        row = PointTransaction(
            customer_id=customer_id, checkout_id=checkout_id, kind="credit", points=points
        )
        if _insert_once(session, row):
            _add_to_balance(session, customer_id=customer_id, points=points)
            return _public(row), True
        existing = _find_credit(session, customer_id=customer_id, checkout_id=checkout_id)
        if existing is None:  # the violation was not the credit's natural key
            raise RuntimeError("inserting a credit failed on a constraint other than its key")
    if existing.points != points:
        raise CreditConflictError(
            f"Checkout {checkout_id} was already credited to {customer_id} with "
            f"{existing.points} points, not {points}.",
            transaction_id=str(existing.id),
        )
    return _public(existing), False


def reverse(session: Session, *, transaction_id: uuid.UUID) -> TransactionPublic:
    """Take back a credit's points; reversing it again returns the first reversal."""
    original = session.get(PointTransaction, transaction_id)
    if original is None:
        raise TransactionNotFoundError(f"No transaction has the id {transaction_id}.")
    if original.kind != "credit":
        raise NotReversibleError(
            f"Transaction {transaction_id} is a reversal; only credits can be reversed."
        )
    existing = _find_reversal(session, credit_id=original.id)
    if existing is not None:
        return _public(existing)
    row = PointTransaction(
        customer_id=original.customer_id,
        checkout_id=original.checkout_id,
        kind="reversal",
        points=-original.points,
        reverses_id=original.id,
    )
    if _insert_once(session, row):
        _add_to_balance(session, customer_id=original.customer_id, points=-original.points)
        return _public(row)
    existing = _find_reversal(session, credit_id=original.id)
    if existing is None:
        raise RuntimeError("inserting a reversal failed on a constraint other than its key")
    return _public(existing)


def void_checkout(session: Session, *, checkout_id: str) -> CheckoutVoidPublic:
    """Reverse the checkout's credits and refuse any credit for it later (the saga's compensation).

    The voided row is what makes a credit that arrives afterwards (queued in a slow network, or
    sent by a replica that lost its lease) be refused, so the caller never has to guess whether
    a call it gave up on is still on its way. Voiding again changes nothing more.
    """
    _lock_checkout(session, checkout_id=checkout_id)
    voided = session.get(VoidedCheckout, checkout_id)
    if voided is None:
        voided = VoidedCheckout(checkout_id=checkout_id)
        session.add(voided)
        session.flush()
    credits = session.exec(
        select(PointTransaction)
        .where(PointTransaction.checkout_id == checkout_id)
        .where(PointTransaction.kind == "credit")
        .order_by(col(PointTransaction.created_at), col(PointTransaction.id))
    ).all()
    reversals = [reverse(session, transaction_id=row.id) for row in credits]
    return CheckoutVoidPublic(
        checkout_id=checkout_id, voided_at=voided.voided_at, reversals=reversals
    )


def read_account(session: Session, *, customer_id: str) -> AccountPublic:
    """The balance of a customer's account."""
    account = session.get(Account, customer_id)
    if account is None:
        raise AccountNotFoundError(f"The customer {customer_id} was never credited.")
    return AccountPublic(customer_id=account.customer_id, balance=account.balance)


def read_transaction(session: Session, *, transaction_id: uuid.UUID) -> TransactionPublic:
    """One ledger entry by id."""
    row = session.get(PointTransaction, transaction_id)
    if row is None:
        raise TransactionNotFoundError(f"No transaction has the id {transaction_id}.")
    return _public(row)


def list_account_transactions(
    session: Session, *, customer_id: str, limit: int
) -> list[TransactionPublic]:
    """The newest ``limit`` ledger entries of an account (404 if it does not exist)."""
    read_account(session, customer_id=customer_id)
    rows = session.exec(
        select(PointTransaction)
        .where(PointTransaction.customer_id == customer_id)
        .order_by(col(PointTransaction.created_at).desc(), col(PointTransaction.id).desc())
        .limit(limit)
    ).all()
    return [_public(row) for row in rows]


def list_checkout_transactions(session: Session, *, checkout_id: str) -> list[TransactionPublic]:
    """Every ledger entry of a checkout, newest first."""
    rows = session.exec(
        select(PointTransaction)
        .where(PointTransaction.checkout_id == checkout_id)
        .order_by(col(PointTransaction.created_at).desc(), col(PointTransaction.id).desc())
    ).all()
    return [_public(row) for row in rows]
