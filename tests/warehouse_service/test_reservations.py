"""Reserving stock: decrements, all-or-nothing lines, unknown skus, one reservation per checkout."""

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


async def test_reserve_decrements_available(client: httpx.AsyncClient) -> None:
    """A reservation holds its units: reserved goes up, available down, on_hand stays."""
    await stock(client, "SKU-A", 10)

    response = await reserve(client, "c-1", [{"sku": "SKU-A", "quantity": 3}])

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["checkout_id"] == "c-1"
    assert body["status"] == "reserved"
    assert body["items"] == [{"sku": "SKU-A", "quantity": 3}]
    assert body["released_at"] is None
    assert response.headers["location"] == f"/reservations/{body['id']}"
    assert await levels(client, "SKU-A") == (10, 3, 7)
    assert await reservations_of(client, "c-1") == [body]
    read = await client.get(f"/reservations/{body['id']}")
    assert read.status_code == 200
    assert read.json() == body


async def test_reserve_can_take_the_last_unit_but_not_more(client: httpx.AsyncClient) -> None:
    """Exactly the available units can be reserved; one more is refused with 409."""
    await stock(client, "SKU-A", 5)

    assert (await reserve(client, "c-1", [{"sku": "SKU-A", "quantity": 5}])).status_code == 201
    body = assert_problem(await reserve(client, "c-2", [{"sku": "SKU-A", "quantity": 1}]), 409)

    assert "SKU-A" in body["detail"]
    assert await levels(client, "SKU-A") == (5, 5, 0)
    assert await reservations_of(client, "c-2") == []


async def test_multi_line_reservation_is_all_or_nothing(client: httpx.AsyncClient) -> None:
    """One short line makes the whole reservation 409 naming that sku, and no line is held."""
    await stock(client, "SKU-A", 10)
    await stock(client, "SKU-B", 1)
    await stock(client, "SKU-C", 10)

    response = await reserve(
        client,
        "c-1",
        [
            {"sku": "SKU-A", "quantity": 2},
            {"sku": "SKU-B", "quantity": 2},
            {"sku": "SKU-C", "quantity": 2},
        ],
    )

    body = assert_problem(response, 409)
    assert body["type"] == "urn:checkout-suite:problem:insufficient-stock"
    assert "SKU-B" in body["detail"]
    assert body["skus"] == ["SKU-B"]
    assert await levels(client, "SKU-A") == (10, 0, 10)
    assert await levels(client, "SKU-B") == (1, 0, 1)
    assert await levels(client, "SKU-C") == (10, 0, 10)
    assert await reservations_of(client, "c-1") == []


async def test_unknown_sku_is_422_naming_the_field(client: httpx.AsyncClient) -> None:
    """A line with a never-stocked sku is 422 whose errors point at that line's sku; nothing is held."""
    await stock(client, "SKU-A", 10)

    response = await reserve(
        client, "c-1", [{"sku": "SKU-A", "quantity": 1}, {"sku": "NOPE", "quantity": 1}]
    )

    body = assert_problem(response, 422)
    assert body["type"] == "urn:checkout-suite:problem:unknown-sku"
    assert "NOPE" in body["detail"]
    assert [e["loc"] for e in body["errors"]] == [["body", "items", 1, "sku"]]
    assert all(e.keys() == {"loc", "msg", "type"} for e in body["errors"])
    assert await levels(client, "SKU-A") == (10, 0, 10)
    assert await reservations_of(client, "c-1") == []
    assert_problem(await client.get("/inventory/NOPE"), 404)


async def test_duplicate_skus_are_summed(client: httpx.AsyncClient) -> None:
    """Lines repeating a sku are held as one line with the summed quantity."""
    await stock(client, "SKU-A", 10)
    await stock(client, "SKU-B", 10)

    response = await reserve(
        client,
        "c-1",
        [
            {"sku": "SKU-B", "quantity": 1},
            {"sku": "SKU-A", "quantity": 2},
            {"sku": "SKU-A", "quantity": 3},
        ],
    )

    assert response.status_code == 201, response.text
    assert response.json()["items"] == [
        {"sku": "SKU-A", "quantity": 5},
        {"sku": "SKU-B", "quantity": 1},
    ]
    assert await levels(client, "SKU-A") == (10, 5, 5)
    assert await levels(client, "SKU-B") == (10, 1, 9)


async def test_duplicate_skus_are_checked_against_stock_summed(client: httpx.AsyncClient) -> None:
    """Repeated lines that fit one by one but not together are refused with 409; nothing held."""
    await stock(client, "SKU-A", 4)

    response = await reserve(
        client, "c-1", [{"sku": "SKU-A", "quantity": 3}, {"sku": "SKU-A", "quantity": 3}]
    )

    assert "SKU-A" in assert_problem(response, 409)["detail"]
    assert await levels(client, "SKU-A") == (4, 0, 4)
    assert await reservations_of(client, "c-1") == []


async def test_same_checkout_same_lines_returns_existing_reservation(
    client: httpx.AsyncClient,
) -> None:
    """Reserving again for a checkout with the same lines is 200 with the same reservation; stock is taken once."""
    await stock(client, "SKU-A", 10)
    first = await reserve(client, "c-1", [{"sku": "SKU-A", "quantity": 2}])
    assert first.status_code == 201, first.text

    # The same meaning spelt differently (split lines) is the same reservation.
    again = await reserve(
        client, "c-1", [{"sku": "SKU-A", "quantity": 1}, {"sku": "SKU-A", "quantity": 1}]
    )

    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert "idempotent-replayed" not in again.headers
    assert await levels(client, "SKU-A") == (10, 2, 8)
    assert len(await reservations_of(client, "c-1")) == 1


async def test_same_checkout_different_lines_is_409(client: httpx.AsyncClient) -> None:
    """Reserving again for a checkout with other lines is 409; the first reservation stands alone."""
    await stock(client, "SKU-A", 10)
    await stock(client, "SKU-B", 10)
    first = await reserve(client, "c-1", [{"sku": "SKU-A", "quantity": 2}])
    assert first.status_code == 201, first.text

    for items in (
        [{"sku": "SKU-A", "quantity": 3}],
        [{"sku": "SKU-B", "quantity": 2}],
        [{"sku": "SKU-A", "quantity": 2}, {"sku": "SKU-B", "quantity": 1}],
    ):
        body = assert_problem(await reserve(client, "c-1", items), 409)
        assert body["type"] == "urn:checkout-suite:problem:reservation-conflict"

    assert await levels(client, "SKU-A") == (10, 2, 8)
    assert await levels(client, "SKU-B") == (10, 0, 10)
    assert await reservations_of(client, "c-1") == [first.json()]


async def test_list_reservations_of_unknown_checkout_is_empty(client: httpx.AsyncClient) -> None:
    """A checkout without a reservation lists none; a missing checkout_id is a 422 problem."""
    assert await reservations_of(client, "never") == []
    body = assert_problem(await client.get("/reservations"), 422)
    assert [e["loc"] for e in body["errors"]] == [["query", "checkout_id"]]
