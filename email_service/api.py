"""HTTP routes of the email service: thin; the queries live in ``messages``, ``POST /emails`` in ``outbox``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import EmailStr

from email_service import messages, outbox
from email_service.errors import EmailNotFoundError
from email_service.schemas import (
    CHECKOUT_ID_PATTERN,
    EmailCreate,
    EmailDetail,
    EmailPage,
    EmailPublic,
)
from servicekit.idempotency import IdempotencyKeyHeader
from servicekit.problems import BadRequestInputError, problem_responses
from servicekit.service import DatabaseDep, uuid_or_404

router = APIRouter()

_ALREADY_DELIVERED: dict[int | str, dict[str, Any]] = {
    200: {
        "model": EmailPublic,
        "description": "The checkout's message for this template was already delivered",
    }
}


@router.post(
    "/emails",
    tags=["emails"],
    summary="Send an email about a checkout",
    status_code=201,
    response_model=EmailPublic,
    responses=_ALREADY_DELIVERED | problem_responses(409, 413, 415, 422, 503),
)
async def create_email(
    body: EmailCreate,
    request: Request,
    database: DatabaseDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Render the template, record the message, then send it (or log it without SMTP_URL); 503 + Retry-After if the mail server refuses."""
    result = await outbox.submit(database, request.state.mailer, body, key=idempotency_key)
    return result.to_response({"Location": f"/emails/{result.body['id']}"})


@router.get(
    "/emails",
    tags=["emails"],
    summary="List emails",
    response_model=EmailPage,
    responses=problem_responses(422),
)
async def list_emails(
    database: DatabaseDep,
    to: Annotated[
        EmailStr | None, Query(description="Recipient address.", examples=["ada@example.com"])
    ] = None,
    checkout_id: Annotated[
        str | None,
        Query(min_length=1, max_length=64, pattern=CHECKOUT_ID_PATTERN, description="Checkout."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="At most this many.")] = 50,
) -> EmailPage:
    """Messages to an address and/or about a checkout (at least one filter), newest first."""
    if to is None and checkout_id is None:
        raise BadRequestInputError(
            "Give at least one filter: to or checkout_id.",
            errors=[
                {"loc": ["query", name], "msg": "to or checkout_id is required", "type": "missing"}
                for name in ("to", "checkout_id")
            ],
        )
    items = await messages.list_messages(database, to=to, checkout_id=checkout_id, limit=limit)
    return EmailPage(items=items)


@router.get(
    "/emails/{email_id}",
    tags=["emails"],
    summary="Read an email",
    response_model=EmailDetail,
    responses=problem_responses(404),
)
async def read_email(email_id: str, database: DatabaseDep) -> EmailDetail:
    """One message with its rendered body, delivery status and attempts."""
    parsed = uuid_or_404(email_id, EmailNotFoundError, "email")
    return messages.detail(await messages.read_message(database, message_id=parsed))
