"""Two non-durable checkout apps: the same three calls as the orchestrator, with no journal.

``uvicorn bench.baselines:create_httpx_app --factory`` (a plain shared ``httpx.AsyncClient``) and
``uvicorn bench.baselines:create_aiohttp_app --factory`` (``aiohttp.ClientSession``). Both are
FastAPI apps like the orchestrator: ``POST /checkouts`` validates the body with pydantic, reserves
the stock, credits a member's points and sends the confirmation, in sequence, each call with the
same body and ``Idempotency-Key`` the orchestrator sends; then answers 201 with the ids. Nothing is
recorded: a crash loses the checkout. They are what "not durable" costs.

Service URLs come from ``WAREHOUSE_URL``, ``REWARDS_URL`` and ``EMAIL_URL``; ``SERVICE_TOKEN`` (if set)
is sent as a bearer token, as the orchestrator sends it. The Restate baseline (``bench.restate_app``)
runs the same ``run_checkout`` on the same models, each call inside a journaled step.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import aiohttp

Post = Callable[[str, dict[str, Any], str], Awaitable[dict[str, Any]]]


class Customer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320)
    name: str = Field(min_length=1, max_length=200)
    rewards_member: bool = False


class LineItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=1000)
    unit_price: Decimal = Field(ge=0, le=1_000_000, decimal_places=2)


class CheckoutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer: Customer
    items: list[LineItem] = Field(min_length=1, max_length=100)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")


class ServiceError(Exception):
    """A service answered something other than 2xx."""


def call_headers(key: str) -> dict[str, str]:
    """What the orchestrator sends with a call: the Idempotency-Key, and its service token if set."""
    token = os.environ.get("SERVICE_TOKEN", "").split(",")[0].strip()
    return (
        {"Idempotency-Key": key, "Authorization": f"Bearer {token}"}
        if token
        else {"Idempotency-Key": key}
    )


def _urls() -> tuple[str, str, str]:
    return (
        os.environ.get("WAREHOUSE_URL", "http://127.0.0.1:8002").rstrip("/"),
        os.environ.get("REWARDS_URL", "http://127.0.0.1:8003").rstrip("/"),
        os.environ.get("EMAIL_URL", "http://127.0.0.1:8001").rstrip("/"),
    )


async def run_checkout(
    body: CheckoutCreate, post: Post, checkout_id: str | None = None
) -> dict[str, Any]:
    """The three calls in sequence, exactly the requests the orchestrator makes.

    ``checkout_id`` is a fresh UUID unless given: a workflow that is replayed (Restate's) must
    derive the same id on every replay, or its answer would name another checkout than the one
    the services saw.
    """
    warehouse, rewards, email = _urls()
    checkout_id = checkout_id or str(uuid.uuid4())
    total = sum((line.unit_price * line.quantity for line in body.items), Decimal(0))
    points = (
        int(total.to_integral_value(rounding=ROUND_FLOOR)) if body.customer.rewards_member else 0
    )
    items = [line.model_dump(mode="json") for line in body.items]
    reservation = await post(
        f"{warehouse}/reservations",
        {
            "checkout_id": checkout_id,
            "items": [{"sku": i["sku"], "quantity": i["quantity"]} for i in items],
        },
        f"{checkout_id}:warehouse:reserve",
    )
    steps: dict[str, Any] = {"warehouse": {"reservation_id": reservation["id"]}}
    if body.customer.rewards_member:
        credit = await post(
            f"{rewards}/accounts/{quote(body.customer.id, safe='')}/transactions",
            {"checkout_id": checkout_id, "points": points},
            f"{checkout_id}:rewards:credit",
        )
        steps["rewards"] = {"transaction_id": credit["id"], "points": credit["points"]}
    message = await post(
        f"{email}/emails",
        {
            "to": body.customer.email,
            "template": "order_confirmation",
            "checkout_id": checkout_id,
            "context": {
                "customer_name": body.customer.name,
                "checkout_id": checkout_id,
                "items": items,
                "total": f"{total:.2f}",
                "currency": body.currency,
                "points": points,
            },
        },
        f"{checkout_id}:email:confirmation",
    )
    steps["email"] = {"email_id": message["id"], "status": message["status"]}
    return {
        "id": checkout_id,
        "status": "completed",
        "total": f"{total:.2f}",
        "points": points,
        "steps": steps,
    }


def _app(lifespan: Any, post_of: Callable[[FastAPI], Post], title: str) -> FastAPI:
    app = FastAPI(title=title, lifespan=lifespan)

    @app.post("/checkouts", status_code=201)
    async def create_checkout(body: CheckoutCreate) -> JSONResponse:
        try:
            answer = await run_checkout(body, post_of(app))
        except ServiceError as exc:
            return JSONResponse({"status": "failed", "detail": str(exc)}, status_code=502)
        return JSONResponse(answer, status_code=201)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def create_httpx_app() -> FastAPI:
    """The baseline on one shared ``httpx.AsyncClient`` (the orchestrator's own limits)."""
    import httpx

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0), limits=limits) as client:
            app.state.client = client
            yield

    def post_of(app: FastAPI) -> Post:
        client: httpx.AsyncClient = app.state.client

        async def post(url: str, json: dict[str, Any], key: str) -> dict[str, Any]:
            response = await client.post(url, json=json, headers=call_headers(key))
            if response.status_code >= 300:
                raise ServiceError(f"POST {url} answered {response.status_code}")
            return response.json()  # type: ignore[no-any-return]

        return post

    return _app(lifespan, post_of, "Baseline: httpx, no journal")


def create_aiohttp_app() -> FastAPI:
    """The baseline on ``aiohttp.ClientSession``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with aiohttp_session() as session:
            app.state.session = session
            yield

    def post_of(app: FastAPI) -> Post:
        return aiohttp_post(app.state.session)

    return _app(lifespan, post_of, "Baseline: aiohttp, no journal")


def aiohttp_session() -> aiohttp.ClientSession:
    """The aiohttp baseline's client: its connection limit and 5 s per call."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=200, limit_per_host=0)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5.0))


def aiohttp_post(session: aiohttp.ClientSession) -> Post:
    """One call to a service on ``session``: the JSON answer, or ``ServiceError`` if not 2xx."""

    async def post(url: str, json: dict[str, Any], key: str) -> dict[str, Any]:
        async with session.post(url, json=json, headers=call_headers(key)) as response:
            if response.status >= 300:
                raise ServiceError(f"POST {url} answered {response.status}")
            return await response.json()  # type: ignore[no-any-return]

    return post
