"""The rewards service's reads. Functions take the session, then keyword-only arguments.

Crediting, reversing and voiding (the saga's hot path, and every write) are plain SQL in
``ledger``, which says how they stay exactly-once under any concurrency.
"""

from __future__ import annotations

import uuid
from typing import Literal

from sqlmodel import Session, col, select

from rewards_service.errors import AccountNotFoundError, TransactionNotFoundError
from rewards_service.models import Account, PointTransaction
from rewards_service.schemas import AccountPublic, TransactionPublic


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
