"""Releasing a reservation: the saga's compensation."""

from __future__ import annotations

import uuid

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


async def test_release_returns_stock_and_second_release_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    """Release gives every line's units back; releasing again is 200 with the same body and no effect."""
    await stock(client, "SKU-A", 10)
    await stock(client, "SKU-B", 5)
    created = await reserve(
        client, "c-1", [{"sku": "SKU-A", "quantity": 4}, {"sku": "SKU-B", "quantity": 5}]
    )
    assert created.status_code == 201, created.text
    reservation_id = created.json()["id"]
    assert await levels(client, "SKU-B") == (5, 5, 0)

    first = await client.post(f"/reservations/{reservation_id}/release")

    assert first.status_code == 200, first.text
    released = first.json()
    assert released["id"] == reservation_id
    assert released["status"] == "released"
    assert released["released_at"] is not None
    assert released["items"] == created.json()["items"]
    assert await levels(client, "SKU-A") == (10, 0, 10)
    assert await levels(client, "SKU-B") == (5, 0, 5)
    assert await reservations_of(client, "c-1") == [released]

    second = await client.post(f"/reservations/{reservation_id}/release")

    assert second.status_code == 200, second.text
    assert second.json() == released
    assert await levels(client, "SKU-A") == (10, 0, 10)
    assert await levels(client, "SKU-B") == (5, 0, 5)


async def test_released_stock_can_be_reserved_by_another_checkout(
    client: httpx.AsyncClient,
) -> None:
    """Units given back by a release are available to the next checkout."""
    await stock(client, "SKU-A", 1)
    first = await reserve(client, "c-1", [{"sku": "SKU-A", "quantity": 1}])
    assert_problem(await reserve(client, "c-2", [{"sku": "SKU-A", "quantity": 1}]), 409)

    assert (await client.post(f"/reservations/{first.json()['id']}/release")).status_code == 200
    second = await reserve(client, "c-2", [{"sku": "SKU-A", "quantity": 1}])

    assert second.status_code == 201, second.text
    assert await levels(client, "SKU-A") == (1, 1, 0)


async def test_release_leaves_other_reservations_alone(client: httpx.AsyncClient) -> None:
    """Releasing one checkout's reservation returns only its own units."""
    await stock(client, "SKU-A", 10)
    first = await reserve(client, "c-1", [{"sku": "SKU-A", "quantity": 2}])
    other = await reserve(client, "c-2", [{"sku": "SKU-A", "quantity": 3}])

    assert (await client.post(f"/reservations/{first.json()['id']}/release")).status_code == 200

    assert await levels(client, "SKU-A") == (10, 3, 7)
    assert (await reservations_of(client, "c-2")) == [other.json()]


@pytest.mark.parametrize("reservation_id", [str(uuid.uuid4()), "not-a-uuid", "123"])
async def test_release_unknown_reservation_is_404(
    client: httpx.AsyncClient, reservation_id: str
) -> None:
    """Releasing or reading an id no reservation has (even a non-UUID) is a 404 problem; stock unchanged."""
    await stock(client, "SKU-A", 10)
    await reserve(client, "c-1", [{"sku": "SKU-A", "quantity": 2}])

    body = assert_problem(await client.post(f"/reservations/{reservation_id}/release"), 404)
    assert reservation_id in body["detail"]
    assert_problem(await client.get(f"/reservations/{reservation_id}"), 404)

    assert await levels(client, "SKU-A") == (10, 2, 8)
