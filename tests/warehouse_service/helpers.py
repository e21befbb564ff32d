"""Helpers for warehouse tests: stocking, reserving and reading effects."""

from __future__ import annotations

from typing import Any

import httpx


async def stock(client: httpx.AsyncClient, sku: str, on_hand: int) -> None:
    """Set the on-hand count of ``sku``."""
    response = await client.put(f"/inventory/{sku}", json={"on_hand": on_hand})
    assert response.status_code in {200, 201}, response.text


async def inventory(client: httpx.AsyncClient, sku: str) -> dict[str, Any]:
    """Stock of ``sku`` as ``GET /inventory/{sku}`` shows it."""
    response = await client.get(f"/inventory/{sku}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["available"] == body["on_hand"] - body["reserved"]
    return body


async def levels(client: httpx.AsyncClient, sku: str) -> tuple[int, int, int]:
    """``(on_hand, reserved, available)`` of ``sku``."""
    body = await inventory(client, sku)
    return body["on_hand"], body["reserved"], body["available"]


async def reservations_of(client: httpx.AsyncClient, checkout_id: str) -> list[dict[str, Any]]:
    """The reservations ``GET /reservations?checkout_id=`` lists for a checkout."""
    response = await client.get("/reservations", params={"checkout_id": checkout_id})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def reserve(
    client: httpx.AsyncClient,
    checkout_id: str,
    items: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """``POST /reservations`` for ``checkout_id``."""
    return await client.post(
        "/reservations", json={"checkout_id": checkout_id, "items": items}, headers=headers
    )
