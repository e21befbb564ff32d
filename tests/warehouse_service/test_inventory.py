"""Reading and setting stock: GET and PUT /inventory/{sku}."""

from __future__ import annotations

import httpx
import pytest

from tests.support import assert_problem
from tests.warehouse_service.helpers import levels, reserve, stock

pytestmark = pytest.mark.anyio


async def test_put_creates_then_updates(client: httpx.AsyncClient) -> None:
    """The first PUT stocks a sku (201), later PUTs set its on_hand (200); repeating is harmless."""
    created = await client.put("/inventory/SKU-A", json={"on_hand": 5})

    assert created.status_code == 201, created.text
    assert created.json() == {"sku": "SKU-A", "on_hand": 5, "reserved": 0, "available": 5}
    assert await levels(client, "SKU-A") == (5, 0, 5)

    for _ in range(2):
        updated = await client.put("/inventory/SKU-A", json={"on_hand": 12})
        assert updated.status_code == 200, updated.text
        assert updated.json() == {"sku": "SKU-A", "on_hand": 12, "reserved": 0, "available": 12}
    assert await levels(client, "SKU-A") == (12, 0, 12)

    zero = await client.put("/inventory/SKU-A", json={"on_hand": 0})
    assert zero.status_code == 200
    assert await levels(client, "SKU-A") == (0, 0, 0)


async def test_put_keeps_reserved_units(client: httpx.AsyncClient) -> None:
    """Setting on_hand keeps what is reserved: available becomes the new on_hand minus reserved."""
    await stock(client, "SKU-A", 10)
    assert (await reserve(client, "c-1", [{"sku": "SKU-A", "quantity": 4}])).status_code == 201

    response = await client.put("/inventory/SKU-A", json={"on_hand": 4})

    assert response.status_code == 200, response.text
    assert response.json() == {"sku": "SKU-A", "on_hand": 4, "reserved": 4, "available": 0}
    assert await levels(client, "SKU-A") == (4, 4, 0)


async def test_put_below_reserved_is_409_and_changes_nothing(client: httpx.AsyncClient) -> None:
    """On_hand below the reserved units is a 409 problem; the stock stays as it was."""
    await stock(client, "SKU-A", 10)
    assert (await reserve(client, "c-1", [{"sku": "SKU-A", "quantity": 4}])).status_code == 201

    body = assert_problem(await client.put("/inventory/SKU-A", json={"on_hand": 3}), 409)

    assert body["type"] == "urn:checkout-suite:problem:stock-below-reserved"
    assert "SKU-A" in body["detail"]
    assert await levels(client, "SKU-A") == (10, 4, 6)


async def test_get_unknown_sku_is_404(client: httpx.AsyncClient) -> None:
    """Reading a sku that was never stocked is a 404 problem naming it."""
    await stock(client, "SKU-A", 1)

    body = assert_problem(await client.get("/inventory/SKU-NEVER"), 404)

    assert "SKU-NEVER" in body["detail"]


async def test_skus_are_case_sensitive_and_independent(client: httpx.AsyncClient) -> None:
    """Each sku has its own stock; a sku differing only in case is another sku."""
    await stock(client, "SKU-A", 3)
    await stock(client, "sku-a", 7)

    assert await levels(client, "SKU-A") == (3, 0, 3)
    assert await levels(client, "sku-a") == (7, 0, 7)
