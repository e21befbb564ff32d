"""Voiding a checkout: its credits reversed, and credits arriving later refused."""

from __future__ import annotations

from functools import partial

import httpx
import pytest

from tests.rewards_service.helpers import assert_account, credit
from tests.rewards_service.test_concurrency import gather
from tests.support import assert_problem

pytestmark = pytest.mark.anyio


async def void(client: httpx.AsyncClient, checkout_id: str) -> httpx.Response:
    return await client.post(f"/checkouts/{checkout_id}/void")


async def test_voiding_a_credited_checkout_reverses_the_credit_once(
    client: httpx.AsyncClient,
) -> None:
    """The credit is reversed; voiding again answers the same reversal and changes nothing."""
    created = await credit(client, "c-1", "chk-1", 39)
    assert created.status_code == 201, created.text

    first = await void(client, "chk-1")

    assert first.status_code == 200, first.text
    body = first.json()
    assert body["checkout_id"] == "chk-1"
    assert [r["reverses_id"] for r in body["reversals"]] == [created.json()["id"]]
    assert body["reversals"][0]["points"] == -39
    await assert_account(client, "c-1", balance=0, entries=2)
    again = await void(client, "chk-1")
    assert again.status_code == 200, again.text
    assert again.json() == body
    await assert_account(client, "c-1", balance=0, entries=2)


async def test_a_credit_arriving_after_the_void_is_refused(client: httpx.AsyncClient) -> None:
    """A checkout voided before it was credited refuses the credit: no account, no points."""
    voided = await void(client, "chk-late")

    assert voided.status_code == 200, voided.text
    assert voided.json()["reversals"] == []
    late = await credit(client, "c-1", "chk-late", 39, key="chk-late:rewards:credit")
    problem = assert_problem(late, 409)
    assert problem["type"] == "urn:checkout-suite:problem:checkout-voided"
    await assert_account(client, "c-1", balance=None, entries=0)
    # Another checkout of the same customer is credited as usual.
    assert (await credit(client, "c-1", "chk-other", 5)).status_code == 201
    await assert_account(client, "c-1", balance=5, entries=1)


async def test_a_repeated_credit_after_the_void_answers_the_reversed_credit(
    client: httpx.AsyncClient,
) -> None:
    """A credit made before the void, asked again, answers the first credit and adds nothing."""
    first = await credit(client, "c-1", "chk-1", 39)
    assert (await void(client, "chk-1")).status_code == 200

    repeat = await credit(client, "c-1", "chk-1", 39)

    assert repeat.status_code == 200, repeat.text
    assert repeat.json()["id"] == first.json()["id"]
    await assert_account(client, "c-1", balance=0, entries=2)


async def test_concurrent_credit_and_void_never_leave_points(client: httpx.AsyncClient) -> None:
    """Credit and void of the same checkouts racing: whichever wins, the balance ends at zero."""
    calls = []
    for n in range(20):
        calls += [partial(credit, client, "c-1", f"chk-{n}", 10), partial(void, client, f"chk-{n}")]

    responses = await gather(calls)

    credited = 0
    for credited_response, voided in zip(responses[::2], responses[1::2], strict=True):
        assert credited_response.status_code in (201, 409), credited_response.text
        assert voided.status_code == 200, voided.text
        won = credited_response.status_code == 201
        assert len(voided.json()["reversals"]) == (1 if won else 0)
        credited += won
    await assert_account(client, "c-1", balance=0 if credited else None, entries=2 * credited)


@pytest.mark.parametrize("checkout_id", ["x" * 65, "a%0Ab"])
async def test_a_bad_checkout_id_is_a_422_naming_it(
    client: httpx.AsyncClient, checkout_id: str
) -> None:
    """An over-long checkout id or one with control characters changes nothing."""
    problem = assert_problem(await void(client, checkout_id), 422)
    assert problem["errors"][0]["loc"] == ["path", "checkout_id"]
