"""HTTP routes of the rewards service: thin, every query lives in ``ledger``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from rewards_service import ledger
from rewards_service.errors import TransactionNotFoundError
from rewards_service.schemas import (
    AccountPublic,
    CheckoutVoidPublic,
    TransactionCreate,
    TransactionPage,
    TransactionPublic,
)
from servicekit.db.statements import Transaction
from servicekit.idempotency import IdempotencyKeyHeader
from servicekit.problems import problem_responses
from servicekit.service import DatabaseDep, respond_once, uuid_or_404
from servicekit.text import NO_CONTROL_CHARACTERS, CheckoutIdPath

CustomerPath = Annotated[
    str, Path(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS, examples=["c-42"])
]
TransactionIdPath = Annotated[
    str,
    Path(description="The transaction's UUID.", examples=["9b2d7c1e-5f3a-4e8b-b1d2-6a7c8e9f0a1b"]),
]

router = APIRouter()

_EXISTING_CREDIT: dict[int | str, dict[str, Any]] = {
    200: {"model": TransactionPublic, "description": "The checkout's existing credit"}
}


@router.post(
    "/accounts/{customer_id}/transactions",
    tags=["accounts"],
    summary="Credit points for a checkout",
    status_code=201,
    response_model=TransactionPublic,
    responses=_EXISTING_CREDIT | problem_responses(409, 422),
)
async def create_transaction(
    customer_id: CustomerPath,
    body: TransactionCreate,
    database: DatabaseDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Credit the customer's account (creating it) once per checkout; 409 if it was credited with other points or voided."""

    async def action(tx: Transaction) -> tuple[int, TransactionPublic]:
        transaction, created = await ledger.credit(
            tx, customer_id=customer_id, checkout_id=body.checkout_id, points=body.points
        )
        return (201 if created else 200), transaction

    return await respond_once(
        database,
        scope=f"POST /accounts/{customer_id}/transactions",
        key=idempotency_key,
        action=action,
        body=body,
        location=lambda answer: f"/transactions/{answer['id']}",
    )


@router.post(
    "/transactions/{transaction_id}/reverse",
    tags=["transactions"],
    summary="Reverse a credit",
    response_model=TransactionPublic,
    responses=problem_responses(404, 409, 422),
)
async def reverse_transaction(
    transaction_id: TransactionIdPath,
    database: DatabaseDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Take back a credit's points (the saga's compensation); reversing again returns the first reversal."""
    parsed = uuid_or_404(transaction_id, TransactionNotFoundError, "transaction")

    async def action(tx: Transaction) -> tuple[int, TransactionPublic]:
        return 200, await ledger.reverse(tx, transaction_id=parsed)

    scope = f"POST /transactions/{parsed}/reverse"
    return await respond_once(database, scope=scope, key=idempotency_key, action=action)


@router.post(
    "/checkouts/{checkout_id}/void",
    tags=["transactions"],
    summary="Void a checkout",
    response_model=CheckoutVoidPublic,
    responses=problem_responses(422),
)
async def void_checkout(
    checkout_id: CheckoutIdPath, database: DatabaseDep, idempotency_key: IdempotencyKeyHeader = None
) -> JSONResponse:
    """Reverse the checkout's credits and refuse any credit for it afterwards (409).

    The saga's compensation when it cannot know whether its credit request arrived: whatever
    landed is reversed, and whatever is still on its way is refused. Voiding again changes
    nothing more.
    """

    async def action(tx: Transaction) -> tuple[int, CheckoutVoidPublic]:
        return 200, await ledger.void_checkout(tx, checkout_id=checkout_id)

    scope = f"POST /checkouts/{checkout_id}/void"
    return await respond_once(database, scope=scope, key=idempotency_key, action=action)


@router.get(
    "/transactions/{transaction_id}",
    tags=["transactions"],
    summary="Read a transaction",
    response_model=TransactionPublic,
    responses=problem_responses(404, 422),
)
async def read_transaction(
    transaction_id: TransactionIdPath, database: DatabaseDep
) -> TransactionPublic:
    """One ledger entry, a credit or a reversal."""
    parsed = uuid_or_404(transaction_id, TransactionNotFoundError, "transaction")
    return await ledger.read_transaction(database, transaction_id=parsed)


@router.get(
    "/transactions",
    tags=["transactions"],
    summary="Find a checkout's transactions",
    response_model=TransactionPage,
    responses=problem_responses(422),
)
async def list_transactions(
    database: DatabaseDep,
    checkout_id: Annotated[
        str,
        Query(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS, examples=["3f0c2a9e"]),
    ],
) -> TransactionPage:
    """Every ledger entry of a checkout, newest first (an empty list if it has none)."""
    items = await ledger.list_checkout_transactions(database, checkout_id=checkout_id)
    return TransactionPage(items=items)


@router.get(
    "/accounts/{customer_id}",
    tags=["accounts"],
    summary="Read a balance",
    response_model=AccountPublic,
    responses=problem_responses(404, 422),
)
async def read_account(customer_id: CustomerPath, database: DatabaseDep) -> AccountPublic:
    """The customer's point balance (404 if the customer was never credited)."""
    return await ledger.read_account(database, customer_id=customer_id)


@router.get(
    "/accounts/{customer_id}/transactions",
    tags=["accounts"],
    summary="List an account's transactions",
    response_model=TransactionPage,
    responses=problem_responses(404, 422),
)
async def list_account_transactions(
    customer_id: CustomerPath,
    database: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TransactionPage:
    """The account's newest ledger entries, newest first (404 if the customer was never credited)."""
    items = await ledger.list_account_transactions(database, customer_id=customer_id, limit=limit)
    return TransactionPage(items=items)
