"""HTTP routes of the rewards service: thin, every query lives in ``store``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from rewards_service import ledger, store
from rewards_service.errors import TransactionNotFoundError
from rewards_service.schemas import (
    AccountPublic,
    CheckoutVoidPublic,
    TransactionCreate,
    TransactionPage,
    TransactionPublic,
)
from servicekit.db import SessionDep, read_only
from servicekit.idempotency import IdempotencyKeyHeader, fingerprint, run_once
from servicekit.problems import problem_responses
from servicekit.sql import Transaction
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


def _transaction_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise TransactionNotFoundError(f"No transaction has the id {raw}.") from None


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
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Credit the customer's account (creating it) once per checkout; 409 if it was credited with other points or voided."""

    def action(tx: Transaction) -> tuple[int, object]:
        transaction, created = ledger.credit(
            tx, customer_id=customer_id, checkout_id=body.checkout_id, points=body.points
        )
        return (201 if created else 200), transaction.model_dump(mode="json")

    result = await run_once(
        request,
        scope=f"POST /accounts/{customer_id}/transactions",
        key=idempotency_key,
        digest=fingerprint(body.model_dump(mode="json")),
        action=action,
    )
    return result.to_response({"Location": f"/transactions/{result.body['id']}"})


@router.post(
    "/transactions/{transaction_id}/reverse",
    tags=["transactions"],
    summary="Reverse a credit",
    response_model=TransactionPublic,
    responses=problem_responses(404, 409, 422),
)
async def reverse_transaction(
    transaction_id: TransactionIdPath,
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Take back a credit's points (the saga's compensation); reversing again returns the first reversal."""
    parsed = _transaction_id(transaction_id)

    def action(tx: Transaction) -> tuple[int, object]:
        return 200, ledger.reverse(tx, transaction_id=parsed).model_dump(mode="json")

    scope = f"POST /transactions/{parsed}/reverse"
    return (await run_once(request, scope=scope, key=idempotency_key, action=action)).to_response()


@router.post(
    "/checkouts/{checkout_id}/void",
    tags=["transactions"],
    summary="Void a checkout",
    response_model=CheckoutVoidPublic,
    responses=problem_responses(422),
)
async def void_checkout(
    checkout_id: CheckoutIdPath, request: Request, idempotency_key: IdempotencyKeyHeader = None
) -> JSONResponse:
    """Reverse the checkout's credits and refuse any credit for it afterwards (409).

    The saga's compensation when it cannot know whether its credit request arrived: whatever
    landed is reversed, and whatever is still on its way is refused. Voiding again changes
    nothing more.
    """

    def action(tx: Transaction) -> tuple[int, object]:
        return 200, ledger.void_checkout(tx, checkout_id=checkout_id).model_dump(mode="json")

    scope = f"POST /checkouts/{checkout_id}/void"
    return (await run_once(request, scope=scope, key=idempotency_key, action=action)).to_response()


@router.get(
    "/transactions/{transaction_id}",
    tags=["transactions"],
    summary="Read a transaction",
    response_model=TransactionPublic,
    responses=problem_responses(404, 422),
)
def read_transaction(transaction_id: TransactionIdPath, session: SessionDep) -> TransactionPublic:
    """One ledger entry, a credit or a reversal."""
    with read_only(session):
        return store.read_transaction(session, transaction_id=_transaction_id(transaction_id))


@router.get(
    "/transactions",
    tags=["transactions"],
    summary="Find a checkout's transactions",
    response_model=TransactionPage,
    responses=problem_responses(422),
)
def list_transactions(
    session: SessionDep,
    checkout_id: Annotated[
        str,
        Query(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS, examples=["3f0c2a9e"]),
    ],
) -> TransactionPage:
    """Every ledger entry of a checkout, newest first (an empty list if it has none)."""
    with read_only(session):
        return TransactionPage(
            items=store.list_checkout_transactions(session, checkout_id=checkout_id)
        )


@router.get(
    "/accounts/{customer_id}",
    tags=["accounts"],
    summary="Read a balance",
    response_model=AccountPublic,
    responses=problem_responses(404, 422),
)
def read_account(customer_id: CustomerPath, session: SessionDep) -> AccountPublic:
    """The customer's point balance (404 if the customer was never credited)."""
    with read_only(session):
        return store.read_account(session, customer_id=customer_id)


@router.get(
    "/accounts/{customer_id}/transactions",
    tags=["accounts"],
    summary="List an account's transactions",
    response_model=TransactionPage,
    responses=problem_responses(404, 422),
)
def list_account_transactions(
    customer_id: CustomerPath,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TransactionPage:
    """The account's newest ledger entries, newest first (404 if the customer was never credited)."""
    with read_only(session):
        return TransactionPage(
            items=store.list_account_transactions(session, customer_id=customer_id, limit=limit)
        )
