"""Idempotency-Key on the warehouse's mutating endpoints."""

from __future__ import annotations

import httpx
import pytest

from tests.support import assert_problem
from tests.warehouse_service.helpers import (
    levels,
    reservations_of,
    reserve,
    stock,
)

pytestmark = pytest.mark.anyio


async def test_replay_with_same_key_returns_first_answer(client: httpx.AsyncClient) -> None:
    """The same key and body replays the first 201 and body, marked replayed; one reservation exists."""
    await stock(client, "SKU-A", 10)
    headers = {"Idempotency-Key": "chk-1-warehouse-reserve"}
    items = [{"sku": "SKU-A", "quantity": 3}]

    first = await reserve(client, "c-1", items, headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers

    for _ in range(3):
        again = await reserve(client, "c-1", items, headers)
        assert again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["location"] == first.headers["location"]

    assert await levels(client, "SKU-A") == (10, 3, 7)
    assert await reservations_of(client, "c-1") == [first.json()]


async def test_replay_still_answers_after_the_stock_ran_out(client: httpx.AsyncClient) -> None:
    """A replay answers as the first time even when a fresh request would now be refused."""
    await stock(client, "SKU-A", 2)
    headers = {"Idempotency-Key": "k-1"}
    first = await reserve(client, "c-1", [{"sku": "SKU-A", "quantity": 2}], headers)
    assert first.status_code == 201, first.text
    await stock(client, "SKU-A", 2)  # available is now 0

    again = await reserve(client, "c-1", [{"sku": "SKU-A", "quantity": 2}], headers)

    assert again.status_code == 201
    assert again.json() == first.json()
    assert await levels(client, "SKU-A") == (2, 2, 0)


async def test_same_key_with_different_body_is_422(client: httpx.AsyncClient) -> None:
    """Reusing a key with a body of another meaning is a 422 problem and changes nothing."""
    await stock(client, "SKU-A", 10)
    headers = {"Idempotency-Key": "k-1"}
    first = await reserve(client, "c-1", [{"sku": "SKU-A", "quantity": 3}], headers)
    assert first.status_code == 201, first.text

    for checkout_id, quantity in (("c-1", 4), ("c-2", 3)):
        response = await reserve(
            client, checkout_id, [{"sku": "SKU-A", "quantity": quantity}], headers
        )
        body = assert_problem(response, 422)
        assert body["type"] == "urn:checkout-suite:problem:idempotency-key-reused"
        assert "idempotent-replayed" not in response.headers

    assert await levels(client, "SKU-A") == (10, 3, 7)
    assert await reservations_of(client, "c-1") == [first.json()]
    assert await reservations_of(client, "c-2") == []


async def test_same_key_compares_parsed_json(client: httpx.AsyncClient) -> None:
    """A body with the same meaning but other key order and spacing is a replay, not a conflict."""
    await stock(client, "SKU-A", 10)
    headers = {"Idempotency-Key": "k-1", "Content-Type": "application/json"}
    first = await client.post(
        "/reservations",
        content=b'{"checkout_id":"c-1","items":[{"sku":"SKU-A","quantity":1}]}',
        headers=headers,
    )
    assert first.status_code == 201, first.text

    again = await client.post(
        "/reservations",
        content=b'{ "items": [ {"quantity": 1, "sku": "SKU-A"} ],\n "checkout_id": "c-1" }',
        headers=headers,
    )

    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await levels(client, "SKU-A") == (10, 1, 9)


async def test_refusal_is_not_recorded_under_the_key(client: httpx.AsyncClient) -> None:
    """A keyed request refused for lack of stock can succeed with the same key once stock arrives."""
    await stock(client, "SKU-A", 1)
    headers = {"Idempotency-Key": "k-1"}
    items = [{"sku": "SKU-A", "quantity": 2}]
    assert_problem(await reserve(client, "c-1", items, headers), 409)
    assert await levels(client, "SKU-A") == (1, 0, 1)

    await stock(client, "SKU-A", 2)
    response = await reserve(client, "c-1", items, headers)

    assert response.status_code == 201, response.text
    assert "idempotent-replayed" not in response.headers
    assert await levels(client, "SKU-A") == (2, 2, 0)


async def test_keys_are_scoped_per_endpoint(client: httpx.AsyncClient) -> None:
    """One key used for a reservation and for its release names two different requests."""
    await stock(client, "SKU-A", 10)
    headers = {"Idempotency-Key": "k-1"}
    created = await reserve(client, "c-1", [{"sku": "SKU-A", "quantity": 3}], headers)
    assert created.status_code == 201, created.text

    released = await client.post(f"/reservations/{created.json()['id']}/release", headers=headers)

    assert released.status_code == 200, released.text
    assert released.json()["status"] == "released"
    assert "idempotent-replayed" not in released.headers
    assert await levels(client, "SKU-A") == (10, 0, 10)


async def test_keyed_release_replays(client: httpx.AsyncClient) -> None:
    """A release repeated with its key replays the first answer and returns the stock once."""
    await stock(client, "SKU-A", 10)
    created = await reserve(client, "c-1", [{"sku": "SKU-A", "quantity": 3}])
    other = await reserve(client, "c-2", [{"sku": "SKU-A", "quantity": 2}])
    assert other.status_code == 201
    url = f"/reservations/{created.json()['id']}/release"
    headers = {"Idempotency-Key": "chk-1-warehouse-release"}

    first = await client.post(url, headers=headers)
    again = await client.post(url, headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await levels(client, "SKU-A") == (10, 2, 8)


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "has space", "tab\tinside", "caf\u00e9"],
    ids=["empty", "256-chars", "space", "tab", "non-ascii"],
)
async def test_invalid_idempotency_key_is_422_and_changes_nothing(
    client: httpx.AsyncClient, key: str
) -> None:
    """A key that is not 1–255 visible ASCII characters is a 422 naming the header; nothing is held."""
    await stock(client, "SKU-A", 10)

    response = await client.post(
        "/reservations",
        json={"checkout_id": "c-1", "items": [{"sku": "SKU-A", "quantity": 1}]},
        headers=[("Idempotency-Key", key.encode())],
    )

    body = assert_problem(response, 422)
    assert ["header", "Idempotency-Key"] in [e["loc"] for e in body["errors"]]
    assert await levels(client, "SKU-A") == (10, 0, 10)
    assert await reservations_of(client, "c-1") == []


async def test_key_of_255_visible_characters_is_accepted(client: httpx.AsyncClient) -> None:
    """The longest allowed key, of every visible ASCII character, is accepted and replays."""
    await stock(client, "SKU-A", 10)
    visible = "".join(chr(c) for c in range(0x21, 0x7F))
    key = (visible * 3)[:255]
    headers = {"Idempotency-Key": key}
    items = [{"sku": "SKU-A", "quantity": 1}]

    first = await reserve(client, "c-1", items, headers)
    again = await reserve(client, "c-1", items, headers)

    assert first.status_code == again.status_code == 201, first.text
    assert again.headers["idempotent-replayed"] == "true"
    assert await levels(client, "SKU-A") == (10, 1, 9)
