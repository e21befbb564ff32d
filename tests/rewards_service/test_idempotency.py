"""Idempotency-Key on the rewards service's mutating endpoints."""

from __future__ import annotations

import httpx
import pytest

from tests.rewards_service.helpers import assert_account, credit, reverse
from tests.support import assert_problem

pytestmark = pytest.mark.anyio


async def test_credit_replayed_with_same_key(client: httpx.AsyncClient) -> None:
    """A repeated credit with the same key replays the first answer and credits once."""
    first = await credit(client, "c-1", "chk-1", 39, key="k-1")

    again = await credit(client, "c-1", "chk-1", 39, key="k-1")

    assert first.status_code == again.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    await assert_account(client, "c-1", balance=39, entries=1)


async def test_same_meaning_in_other_json_order_is_replayed(client: httpx.AsyncClient) -> None:
    """The key compares the parsed body, so reordered fields are the same request."""
    first = await credit(client, "c-1", "chk-1", 39, key="k-1")

    again = await client.post(
        "/accounts/c-1/transactions",
        content=b'{ "points": 39,  "checkout_id": "chk-1" }',
        headers={"Idempotency-Key": "k-1", "Content-Type": "application/json"},
    )

    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    await assert_account(client, "c-1", balance=39, entries=1)


async def test_same_key_with_other_body_is_422(client: httpx.AsyncClient) -> None:
    """Reusing a key with another body is a 422 problem and the balance is unchanged."""
    await credit(client, "c-1", "chk-1", 39, key="k-1")

    for checkout_id, points in [("chk-1", 40), ("chk-2", 39)]:
        response = await credit(client, "c-1", checkout_id, points, key="k-1")
        problem = assert_problem(response, 422)
        assert problem["type"] == "urn:checkout-suite:problem:idempotency-key-reused"
    await assert_account(client, "c-1", balance=39, entries=1)


async def test_key_is_scoped_to_the_account(client: httpx.AsyncClient) -> None:
    """The same key on two customers' paths names two different requests."""
    await credit(client, "c-1", "chk-1", 5, key="k-1")

    other = await credit(client, "c-2", "chk-1", 5, key="k-1")

    assert other.status_code == 201
    assert "idempotent-replayed" not in other.headers
    await assert_account(client, "c-1", balance=5, entries=1)
    await assert_account(client, "c-2", balance=5, entries=1)


async def test_reversal_replayed_with_same_key(client: httpx.AsyncClient) -> None:
    """A repeated reversal with the same key replays the first answer and reverses once."""
    credited = (await credit(client, "c-1", "chk-1", 39)).json()
    first = await reverse(client, credited["id"], key="r-1")

    again = await reverse(client, credited["id"], key="r-1")

    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    await assert_account(client, "c-1", balance=0, entries=2)


async def test_refusal_is_not_recorded_under_the_key(client: httpx.AsyncClient) -> None:
    """A refused request leaves its key unused, so the key can then carry a valid request."""
    await credit(client, "c-1", "chk-1", 39)
    assert_problem(await credit(client, "c-1", "chk-1", 40, key="k-1"), 409)

    response = await credit(client, "c-1", "chk-2", 40, key="k-1")

    assert response.status_code == 201
    assert "idempotent-replayed" not in response.headers
    await assert_account(client, "c-1", balance=79, entries=2)


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "tab\tkey"])
async def test_malformed_key_is_422(client: httpx.AsyncClient, key: str) -> None:
    """A key that is not 1–255 visible ASCII characters is a 422 problem and credits nothing."""
    response = await client.post(
        "/accounts/c-1/transactions",
        json={"checkout_id": "chk-1", "points": 39},
        headers={"Idempotency-Key": key},
    )

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    await assert_account(client, "c-1", balance=None, entries=0)
