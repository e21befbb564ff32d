"""Crediting points: accounts, balances and the one-credit-per-checkout rule."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx
import pytest

from tests.rewards_service.helpers import assert_account, credit
from tests.support import assert_problem

pytestmark = pytest.mark.anyio


async def test_credit_creates_account_and_balance(client: httpx.AsyncClient) -> None:
    """The first credit creates the account with the credited balance and one ledger entry."""
    response = await credit(client, "c-42", "chk-1", 39)

    assert response.status_code == 201
    body = response.json()
    assert body["customer_id"] == "c-42"
    assert body["checkout_id"] == "chk-1"
    assert body["kind"] == "credit"
    assert body["points"] == 39
    assert body["reverses_id"] is None
    uuid.UUID(body["id"])
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None
    assert response.headers["location"] == f"/transactions/{body['id']}"
    assert await assert_account(client, "c-42", balance=39, entries=1) == [body]


async def test_location_reads_the_transaction(client: httpx.AsyncClient) -> None:
    """The Location of a credit answers with the same transaction."""
    created = await credit(client, "c-1", "chk-1", 5)

    response = await client.get(created.headers["location"])

    assert response.status_code == 200
    assert response.json() == created.json()


async def test_account_is_404_before_any_credit(client: httpx.AsyncClient) -> None:
    """An account that was never credited is a 404 problem, and so is its ledger."""
    assert_problem(await client.get("/accounts/nobody"), 404)
    assert_problem(await client.get("/accounts/nobody/transactions"), 404)
    assert_problem(await client.get(f"/transactions/{uuid.uuid4()}"), 404)


async def test_zero_point_credit_opens_account_at_zero(client: httpx.AsyncClient) -> None:
    """A credit of zero points is recorded and leaves an account with balance 0."""
    response = await credit(client, "c-1", "chk-cheap", 0)

    assert response.status_code == 201
    assert response.json()["points"] == 0
    await assert_account(client, "c-1", balance=0, entries=1)


async def test_credits_of_several_checkouts_add_up(client: httpx.AsyncClient) -> None:
    """Credits of different checkouts add up, and the ledger lists them newest first."""
    ids = [(await credit(client, "c-1", f"chk-{n}", n * 10)).json()["id"] for n in range(1, 4)]

    items = await assert_account(client, "c-1", balance=60, entries=3)
    assert [item["id"] for item in items] == ids[::-1]
    limited = await client.get("/accounts/c-1/transactions", params={"limit": 2})
    assert [item["id"] for item in limited.json()["items"]] == ids[:0:-1]


async def test_accounts_are_separate(client: httpx.AsyncClient) -> None:
    """Each customer's credits go to their own account, even for the same checkout id."""
    await credit(client, "c-1", "chk-1", 7)
    await credit(client, "c-2", "chk-1", 3)

    await assert_account(client, "c-1", balance=7, entries=1)
    await assert_account(client, "c-2", balance=3, entries=1)


async def test_crediting_same_checkout_again_returns_first_credit(
    client: httpx.AsyncClient,
) -> None:
    """Crediting a checkout again with the same points answers 200 with the first credit."""
    first = await credit(client, "c-1", "chk-1", 39)

    again = await credit(client, "c-1", "chk-1", 39)

    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    await assert_account(client, "c-1", balance=39, entries=1)


async def test_crediting_same_checkout_with_other_points_is_409(
    client: httpx.AsyncClient,
) -> None:
    """Crediting a checkout again with other points is a 409 problem and changes nothing."""
    first = await credit(client, "c-1", "chk-1", 39)

    response = await credit(client, "c-1", "chk-1", 40)

    problem = assert_problem(response, 409)
    assert problem["type"] == "urn:checkout-suite:problem:credit-conflict"
    assert problem["transaction_id"] == first.json()["id"]
    await assert_account(client, "c-1", balance=39, entries=1)


async def test_checkout_transactions_lists_credit_and_reversal(
    client: httpx.AsyncClient,
) -> None:
    """Listing by checkout returns its credit and reversal, newest first, and nothing else."""
    credited = (await credit(client, "c-1", "chk-1", 12)).json()
    await credit(client, "c-1", "chk-2", 5)
    reversed_ = (await client.post(f"/transactions/{credited['id']}/reverse")).json()

    response = await client.get("/transactions", params={"checkout_id": "chk-1"})

    assert response.status_code == 200
    assert response.json() == {"items": [reversed_, credited]}
    unknown = await client.get("/transactions", params={"checkout_id": "chk-none"})
    assert unknown.json() == {"items": []}
