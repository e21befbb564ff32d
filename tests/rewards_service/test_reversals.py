"""Reversing credits: the saga's compensation, applied at most once per credit."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.rewards_service.helpers import assert_account, credit, reverse
from tests.support import assert_problem

pytestmark = pytest.mark.anyio


async def test_reversal_brings_balance_to_zero(client: httpx.AsyncClient) -> None:
    """Reversing a credit records a negative reversal and brings the balance back to 0."""
    credited = (await credit(client, "c-1", "chk-1", 39)).json()

    response = await reverse(client, credited["id"])

    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "reversal"
    assert body["points"] == -39
    assert body["reverses_id"] == credited["id"]
    assert body["customer_id"] == "c-1"
    assert body["checkout_id"] == "chk-1"
    assert body["id"] != credited["id"]
    assert await assert_account(client, "c-1", balance=0, entries=2) == [body, credited]


async def test_reversing_twice_changes_nothing(client: httpx.AsyncClient) -> None:
    """Reversing a credit again answers the first reversal and moves no points."""
    credited = (await credit(client, "c-1", "chk-1", 39)).json()
    first = await reverse(client, credited["id"])

    again = await reverse(client, credited["id"])

    assert again.status_code == 200
    assert again.json() == first.json()
    await assert_account(client, "c-1", balance=0, entries=2)


async def test_reversal_takes_back_only_its_credit(client: httpx.AsyncClient) -> None:
    """Reversing one credit leaves the account's other credits in the balance."""
    kept = (await credit(client, "c-1", "chk-1", 10)).json()
    dropped = (await credit(client, "c-1", "chk-2", 25)).json()

    await reverse(client, dropped["id"])

    items = await assert_account(client, "c-1", balance=10, entries=3)
    assert kept in items


async def test_reversing_a_reversal_is_409(client: httpx.AsyncClient) -> None:
    """A reversal cannot itself be reversed: 409 problem, nothing changes."""
    credited = (await credit(client, "c-1", "chk-1", 39)).json()
    reversal = (await reverse(client, credited["id"])).json()

    problem = assert_problem(await reverse(client, reversal["id"]), 409)

    assert problem["type"] == "urn:checkout-suite:problem:not-reversible"
    await assert_account(client, "c-1", balance=0, entries=2)


@pytest.mark.parametrize("transaction_id", ["not-a-uuid", "12345", str(uuid.uuid4())])
async def test_reversing_unknown_transaction_is_404(
    client: httpx.AsyncClient, transaction_id: str
) -> None:
    """Reversing an unknown or malformed transaction id is a 404 problem and changes nothing."""
    await credit(client, "c-1", "chk-1", 39)

    assert_problem(await reverse(client, transaction_id), 404)
    assert_problem(await client.get(f"/transactions/{transaction_id}"), 404)
    await assert_account(client, "c-1", balance=39, entries=1)


async def test_credit_after_reversal_does_not_credit_again(client: httpx.AsyncClient) -> None:
    """Once a checkout's credit is reversed, crediting the checkout again returns the old credit."""
    credited = (await credit(client, "c-1", "chk-1", 39)).json()
    await reverse(client, credited["id"])

    again = await credit(client, "c-1", "chk-1", 39)

    assert again.status_code == 200
    assert again.json() == credited
    await assert_account(client, "c-1", balance=0, entries=2)
