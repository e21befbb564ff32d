"""HTTP routes of the orchestrator: thin; the saga lives in ``saga/``, queries in ``store``."""

from __future__ import annotations

import json
import time
import uuid
from decimal import ROUND_FLOOR, Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError

from orchestrator import views
from orchestrator.choreography.placing import Placing
from orchestrator.errors import (
    CheckoutChoreographedError,
    CheckoutNotFoundError,
    CheckoutPastPivotError,
    CheckoutTerminalError,
    IdempotencyKeyInFlightError,
)
from orchestrator.journal.journal import Journal, is_duplicate_key
from orchestrator.journal.records import CheckoutRecord, new_checkout
from orchestrator.saga.supervisor import Supervisor
from orchestrator.schemas import CHECKOUT_EXAMPLE, CheckoutCreate, CheckoutPage, CheckoutPublic
from orchestrator.settings import Settings
from orchestrator.statuses import TERMINAL_STATUSES, CheckoutStatus
from servicekit.events.runtime import Coordination
from servicekit.idempotency import (
    REPLAYED_HEADER,
    IdempotencyKeyHeader,
    fingerprint,
    require_same_request,
    stored_key,
)
from servicekit.problems import problem_responses
from servicekit.service import uuid_or_404
from servicekit.text import NO_CONTROL_CHARACTERS


# Dependencies are ``async def`` even with nothing to await: FastAPI runs a plain ``def`` one in a
# worker thread, a hand-off and back per dependency per request.
async def get_journal(request: Request) -> Journal:
    return request.state.journal  # type: ignore[no-any-return]


async def get_supervisor(request: Request) -> Supervisor:
    return request.state.supervisor  # type: ignore[no-any-return]


async def get_settings(request: Request) -> Settings:
    return request.state.settings  # type: ignore[no-any-return]


async def limit_checkouts(request: Request) -> None:
    """Refuse a client's checkouts past RATE_LIMIT (429 with Retry-After); nothing is stored."""
    await request.state.rate_limit(request)


JournalDep = Annotated[Journal, Depends(get_journal)]
SupervisorDep = Annotated[Supervisor, Depends(get_supervisor)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

router = APIRouter(tags=["checkouts"])


def _wants_async(prefer: str | None) -> bool:
    tokens = [part.split(";", 1)[0].strip().lower() for part in (prefer or "").split(",")]
    return "respond-async" in tokens


def _new_checkout(
    body: CheckoutCreate, settings: Settings, key_hash: str | None, digest: str
) -> CheckoutRecord:
    total = sum((line.unit_price * line.quantity for line in body.items), Decimal(0))
    points = (
        int(total.to_integral_value(rounding=ROUND_FLOOR)) if body.customer.rewards_member else 0
    )
    dumped = body.model_dump(mode="json")
    return new_checkout(
        customer_id=body.customer.id,
        customer=json.dumps(dumped["customer"]),
        items=json.dumps(dumped["items"]),
        currency=body.currency,
        total_cents=int(total * 100),
        points=points,
        step_order=settings.checkout_steps,
        idempotency_key_hash=key_hash,
        request_fingerprint=digest if key_hash else None,
        deadline_at=time.time() + settings.checkout_deadline_s,
    )


async def _answer_repeat(
    existing: CheckoutRecord, digest: str, journal: Journal, settings: Settings
) -> Response:
    """Answer a request whose Idempotency-Key was seen before.

    The checkout row is the key's record: its hash, the request's fingerprint, and the first
    answer, kept once it is sent (``save_first_response``).
    """
    require_same_request(
        existing.request_fingerprint,
        digest,
        "This Idempotency-Key was first used with a different checkout.",
    )
    if existing.response_status is None or existing.response_body is None:
        age = time.time() - existing.created_at.timestamp()
        if age < settings.checkout_sync_deadline_s + 5:
            raise IdempotencyKeyInFlightError(
                "The first request with this Idempotency-Key has not been answered yet; retry shortly.",
                headers={"Retry-After": "1"},
            )
        # The first request's answer was lost (its replica died): answer from the journal, once for all.
        public = await views.read_checkout(journal, existing.id)
        assert public is not None
        status = 201 if public.status in TERMINAL_STATUSES else 202
        await journal.save_first_response(existing.id, status, public.model_dump_json())
        refreshed = await journal.find_by_key(existing.idempotency_key_hash or "")
        assert refreshed is not None
        existing = refreshed
    assert existing.response_status is not None
    assert existing.response_body is not None
    return Response(
        existing.response_body,
        status_code=existing.response_status,
        headers={"Location": f"/checkouts/{existing.id}", REPLAYED_HEADER: "true"},
        media_type="application/json",
    )


async def _existing(journal: Journal, checkout_id: str) -> CheckoutPublic:
    """The checkout with this id, or a 404 (also for an id that is not a UUID)."""
    parsed = uuid_or_404(checkout_id, CheckoutNotFoundError, "checkout")
    public = await views.read_checkout(journal, parsed)
    if public is None:
        raise CheckoutNotFoundError(f"No checkout has the id {checkout_id}.")
    return public


@router.post(
    "/checkouts",
    summary="Place a checkout",
    dependencies=[Depends(limit_checkouts)],
    status_code=201,
    response_model=CheckoutPublic,
    responses={
        **problem_responses(401, 409, 413, 415, 422, 429),
        202: {
            "model": CheckoutPublic,
            "description": "Accepted: still running (asked for, or past the deadline)",
        },
    },
)
async def create_checkout(
    body: Annotated[
        CheckoutCreate,
        Body(
            openapi_examples={"member": {"summary": "A rewards member", "value": CHECKOUT_EXAMPLE}}
        ),
    ],
    request: Request,
    idempotency_key: IdempotencyKeyHeader = None,
    prefer: Annotated[
        str | None,
        Header(
            description="`respond-async` answers 202 at once; poll the Location.",
            examples=["respond-async"],
        ),
    ] = None,
) -> Response:
    """Reserve stock, credit points and send the confirmation, in order; 201 when done, 202 if still running."""
    # Read from the app's state here rather than through three more dependencies: FastAPI's
    # dependency resolution costs ~10 µs each on the busiest route.
    state = request.state
    journal: Journal = state.journal
    supervisor: Supervisor = state.supervisor
    settings: Settings = state.settings
    # Only a keyed request is ever compared with another one.
    digest = fingerprint(body.model_dump(mode="json")) if idempotency_key else ""
    key_hash = stored_key(idempotency_key) if idempotency_key else None
    if key_hash:
        existing = await journal.find_by_key(key_hash)
        if existing is not None:
            return await _answer_repeat(existing, digest, journal, settings)
    checkout = _new_checkout(body, settings, key_hash, digest)
    # In choreography the checkout is placed as an event, and the services' events end it.
    placing: Placing | None = state.placing
    try:
        if placing is None:
            await supervisor.place(checkout, settings.step_order)
        else:
            await placing.place(checkout, settings.step_order)
    except IntegrityError as exc:
        if not (key_hash and is_duplicate_key(exc)):
            raise
        existing = await journal.find_by_key(key_hash)
        assert existing is not None
        return await _answer_repeat(existing, digest, journal, settings)

    headers = {"Location": f"/checkouts/{checkout.id}"}
    ended_here = None
    if _wants_async(prefer):
        headers["Preference-Applied"] = "respond-async"
    else:
        ending = supervisor if placing is None else placing
        ended_here = await ending.wait(checkout.id, settings.checkout_sync_deadline_s)
    # A saga that ended here says what its journal holds: no need to read it back.
    public = (
        views.to_public(*ended_here)
        if ended_here is not None
        else await views.read_checkout(journal, checkout.id)
    )
    assert public is not None
    # Asked for respond-async, the answer is 202 even if the saga happened to finish already.
    status = 201 if public.status in TERMINAL_STATUSES and not _wants_async(prefer) else 202
    payload = public.model_dump_json()
    if key_hash:
        await journal.save_first_response(checkout.id, status, payload)
    return Response(payload, status_code=status, headers=headers, media_type="application/json")


@router.get(
    "/checkouts/{checkout_id}",
    summary="Read a checkout",
    response_model=CheckoutPublic,
    responses=problem_responses(404),
)
async def read_checkout(checkout_id: str, journal: JournalDep) -> CheckoutPublic:
    """A checkout with every step's status, attempts, timings, result and error."""
    return await _existing(journal, checkout_id)


@router.get(
    "/checkouts",
    summary="List checkouts",
    response_model=CheckoutPage,
    responses=problem_responses(422),
)
async def list_checkouts(
    journal: JournalDep,
    status: Annotated[CheckoutStatus | None, Query()] = None,
    customer_id: Annotated[
        str | None, Query(min_length=1, max_length=200, pattern=NO_CONTROL_CHARACTERS)
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    coordination: Annotated[Coordination | None, Query()] = None,
) -> Any:
    """Checkouts newest first, filtered by status, customer or coordination; follow ``next_cursor`` for the next page."""
    items, next_cursor = await views.list_checkouts(
        journal,
        status=status,
        customer_id=customer_id,
        limit=limit,
        cursor=cursor,
        coordination=coordination,
    )
    return CheckoutPage(items=items, next_cursor=next_cursor)


def _refuse_if_choreographed(checkout: CheckoutPublic, what: str) -> None:
    """Only an orchestrated checkout has someone to retry or cancel it: this orchestrator."""
    if checkout.coordination == "choreography":
        raise CheckoutChoreographedError(
            f"Checkout {checkout.id} is choreographed: the services' events drive it, so it "
            f"cannot be {what} here."
        )


async def _drive_now_if_free(
    journal: Journal, supervisor: Supervisor, checkout_id: uuid.UUID
) -> None:
    """Claim and start a due checkout here at once, rather than at the next recovery pass."""
    token = await journal.claim(checkout_id)
    if token is not None:
        supervisor.start(checkout_id, token)


@router.post(
    "/checkouts/{checkout_id}/retry",
    summary="Retry a stuck checkout",
    status_code=202,
    response_model=CheckoutPublic,
    responses=problem_responses(404, 409),
)
async def retry_checkout(
    checkout_id: str, journal: JournalDep, supervisor: SupervisorDep, settings: SettingsDep
) -> CheckoutPublic:
    """Resume an unfinished checkout now (parked or stuck) with a fresh deadline; 409 once terminal."""
    current = await _existing(journal, checkout_id)
    _refuse_if_choreographed(current, "retried")
    if not await journal.request_retry(current.id, settings.checkout_deadline_s):
        raise CheckoutTerminalError(
            f"Checkout {current.id} is {current.status}; a terminal checkout is never re-run. Place a new checkout."
        )
    await _drive_now_if_free(journal, supervisor, current.id)
    return await _existing(journal, checkout_id)


@router.post(
    "/checkouts/{checkout_id}/cancel",
    summary="Cancel a checkout before its pivot",
    status_code=202,
    response_model=CheckoutPublic,
    responses={
        **problem_responses(404, 409),
        200: {"model": CheckoutPublic, "description": "Already cancelled"},
    },
)
async def cancel_checkout(checkout_id: str, journal: JournalDep, supervisor: SupervisorDep) -> Any:
    """Cancel an unfinished checkout whose confirmation email has not started: its completed steps are compensated."""
    current = await _existing(journal, checkout_id)
    _refuse_if_choreographed(current, "cancelled")
    if current.error and current.error.get("kind") == "cancelled":
        return JSONResponse(
            current.model_dump(mode="json"),
            status_code=200 if current.status == CheckoutStatus.failed else 202,
        )
    if not await journal.request_cancel(current.id):
        current = await _existing(journal, checkout_id)
        if current.status in TERMINAL_STATUSES:
            raise CheckoutTerminalError(f"Checkout {current.id} is already {current.status}.")
        raise CheckoutPastPivotError(
            f"Checkout {current.id} is past its pivot: the confirmation email step has started, so it can only complete."
        )
    await _drive_now_if_free(journal, supervisor, current.id)
    return await _existing(journal, checkout_id)
