"""Helpers for rewards tests: credits and reversals, and accounts as the read endpoints show them."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import assert_problem


async def balance_of(client: httpx.AsyncClient, customer_id: str) -> int | None:
    """The account's balance, or None when it does not exist (a 404 problem)."""
    response = await client.get(f"/accounts/{customer_id}")
    if response.status_code == 404:
        assert_problem(response, 404)
        return None
    assert response.status_code == 200, response.text
    assert response.json()["customer_id"] == customer_id
    balance: int = response.json()["balance"]
    return balance


async def ledger_of(client: httpx.AsyncClient, customer_id: str) -> list[dict[str, Any]]:
    """The account's ledger, newest first; empty when the account does not exist."""
    response = await client.get(f"/accounts/{customer_id}/transactions", params={"limit": 200})
    if response.status_code == 404:
        assert_problem(response, 404)
        return []
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def assert_account(
    client: httpx.AsyncClient, customer_id: str, *, balance: int | None, entries: int
) -> list[dict[str, Any]]:
    """The account has ``balance`` (None: no account), ``entries`` ledger rows, and they agree."""
    items = await ledger_of(client, customer_id)
    assert await balance_of(client, customer_id) == balance
    assert len(items) == entries
    if balance is not None:
        assert sum(item["points"] for item in items) == balance
    return items


async def credit(
    client: httpx.AsyncClient,
    customer_id: str,
    checkout_id: str,
    points: int,
    *,
    key: str | None = None,
) -> httpx.Response:
    """POST a credit, with an Idempotency-Key when ``key`` is given."""
    headers = {"Idempotency-Key": key} if key else {}
    return await client.post(
        f"/accounts/{customer_id}/transactions",
        json={"checkout_id": checkout_id, "points": points},
        headers=headers,
    )


async def reverse(
    client: httpx.AsyncClient, transaction_id: str, *, key: str | None = None
) -> httpx.Response:
    """POST the reversal of a transaction, with an Idempotency-Key when ``key`` is given."""
    headers = {"Idempotency-Key": key} if key else {}
    return await client.post(f"/transactions/{transaction_id}/reverse", headers=headers)
