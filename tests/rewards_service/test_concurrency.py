"""Concurrent requests through the in-process client: no lost update, nothing applied twice."""

from __future__ import annotations

from functools import partial

import httpx
import pytest

from tests.rewards_service.helpers import assert_account, credit, reverse
from tests.support import gather

pytestmark = pytest.mark.anyio


async def test_concurrent_credits_of_many_checkouts_sum_exactly(
    client: httpx.AsyncClient,
) -> None:
    """Fifty credits for different checkouts of one new account, all at once, add up exactly."""
    responses = await gather([partial(credit, client, "c-1", f"chk-{n}", n) for n in range(1, 51)])

    assert [response.status_code for response in responses] == [201] * 50
    items = await assert_account(client, "c-1", balance=sum(range(1, 51)), entries=50)
    assert {item["checkout_id"] for item in items} == {f"chk-{n}" for n in range(1, 51)}


async def test_concurrent_credits_of_one_checkout_apply_once(client: httpx.AsyncClient) -> None:
    """Twenty simultaneous credits of one checkout without a key record exactly one credit."""
    responses = await gather([partial(credit, client, "c-1", "chk-1", 39) for _ in range(20)])

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 19 + [201]
    assert len({response.json()["id"] for response in responses}) == 1
    await assert_account(client, "c-1", balance=39, entries=1)


async def test_concurrent_requests_with_one_key_apply_once(client: httpx.AsyncClient) -> None:
    """Twenty simultaneous credits with the same key all answer the one credit made."""
    responses = await gather(
        [partial(credit, client, "c-1", "chk-1", 39, key="k-1") for _ in range(20)]
    )

    assert {response.status_code for response in responses} == {201}
    assert len({response.json()["id"] for response in responses}) == 1
    replayed = [response.headers.get("idempotent-replayed") for response in responses]
    assert replayed.count(None) == 1
    assert replayed.count("true") == 19
    await assert_account(client, "c-1", balance=39, entries=1)


async def test_concurrent_reversals_apply_once(client: httpx.AsyncClient) -> None:
    """Twenty simultaneous reversals of one credit, keyed or not, take its points back once."""
    credited = (await credit(client, "c-1", "chk-1", 39)).json()

    responses = await gather(
        [
            partial(reverse, client, credited["id"], key=f"r-{n % 2}" if n % 3 else None)
            for n in range(20)
        ]
    )

    assert {response.status_code for response in responses} == {200}
    assert len({response.json()["id"] for response in responses}) == 1
    await assert_account(client, "c-1", balance=0, entries=2)


async def test_concurrent_credits_and_reversals_keep_balance_equal_to_ledger(
    client: httpx.AsyncClient,
) -> None:
    """Credits and reversals interleaved on one account leave balance = sum of the ledger."""
    first = [(await credit(client, "c-1", f"old-{n}", 10)).json()["id"] for n in range(15)]

    calls = [partial(reverse, client, tid) for tid in first]
    calls += [partial(credit, client, "c-1", f"new-{n}", 7) for n in range(15)]
    responses = await gather(calls)

    assert sorted(response.status_code for response in responses) == [200] * 15 + [201] * 15
    await assert_account(client, "c-1", balance=15 * 7, entries=45)
