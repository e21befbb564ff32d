"""Voiding a checkout: the saga's compensation that also refuses reservations arriving later."""

from __future__ import annotations

from functools import partial

import httpx
import pytest

from tests.rewards_service.test_concurrency import gather
from tests.support import assert_problem
from tests.warehouse_service.helpers import (
    levels,
    reservations_of,
    reserve,
    stock,
)

pytestmark = pytest.mark.anyio

LINES = [{"sku": "SKU-A", "quantity": 3}]


async def void(client: httpx.AsyncClient, checkout_id: str) -> httpx.Response:
    return await client.post(f"/checkouts/{checkout_id}/void")


async def test_voiding_a_checkout_releases_its_reservation(client: httpx.AsyncClient) -> None:
    """The reservation's units go back to stock; voiding again answers the same and changes nothing."""
    await stock(client, "SKU-A", 10)
    created = await reserve(client, "c-1", LINES)
    assert created.status_code == 201, created.text

    first = await void(client, "c-1")

    assert first.status_code == 200, first.text
    assert first.json()["id"] == created.json()["id"]
    assert first.json()["status"] == "released"
    assert first.json()["items"] == [{"sku": "SKU-A", "quantity": 3}]
    assert await levels(client, "SKU-A") == (10, 0, 10)
    again = await void(client, "c-1")
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert await levels(client, "SKU-A") == (10, 0, 10)
    assert await reservations_of(client, "c-1") == [first.json()]


async def test_a_reservation_arriving_after_the_void_is_refused(client: httpx.AsyncClient) -> None:
    """Voiding a checkout with no reservation bars it: a late reserve is a 409 and takes nothing."""
    await stock(client, "SKU-A", 10)

    voided = await void(client, "c-late")

    assert voided.status_code == 200, voided.text
    assert voided.json()["status"] == "voided"
    assert voided.json()["items"] == []
    assert voided.json()["checkout_id"] == "c-late"
    late = await reserve(client, "c-late", LINES, headers={"Idempotency-Key": "c-late:reserve"})
    problem = assert_problem(late, 409)
    assert problem["type"] == "urn:checkout-suite:problem:checkout-voided"
    assert await levels(client, "SKU-A") == (10, 0, 10)
    assert await reservations_of(client, "c-late") == [voided.json()]
    assert (await client.get(f"/reservations/{voided.json()['id']}")).json() == voided.json()
    # The refusal was not stored under the key: it changed nothing, and is refused again.
    assert_problem(
        await reserve(client, "c-late", LINES, headers={"Idempotency-Key": "c-late:reserve"}), 409
    )
    # Releasing the voided row by id changes nothing either.
    released = await client.post(f"/reservations/{voided.json()['id']}/release")
    assert released.status_code == 200, released.text
    assert released.json()["status"] == "voided"
    assert await levels(client, "SKU-A") == (10, 0, 10)


async def test_a_reservation_made_before_the_void_stays_released_when_repeated(
    client: httpx.AsyncClient,
) -> None:
    """A repeat of the reservation after the void answers the released reservation, taking nothing."""
    await stock(client, "SKU-A", 10)
    assert (await reserve(client, "c-1", LINES)).status_code == 201
    assert (await void(client, "c-1")).status_code == 200

    repeat = await reserve(client, "c-1", LINES)

    assert repeat.status_code == 200, repeat.text
    assert repeat.json()["status"] == "released"
    assert await levels(client, "SKU-A") == (10, 0, 10)


async def test_concurrent_reserve_and_void_never_leave_units_held(
    client: httpx.AsyncClient,
) -> None:
    """Reserve and void of the same checkouts racing: whichever wins, no unit stays reserved."""
    await stock(client, "SKU-A", 1000)
    calls = []
    for n in range(20):
        calls += [partial(reserve, client, f"c-{n}", LINES), partial(void, client, f"c-{n}")]

    responses = await gather(calls)

    for reserved, voided in zip(responses[::2], responses[1::2], strict=True):
        assert reserved.status_code in (201, 409), reserved.text
        assert voided.status_code == 200, voided.text
        assert voided.json()["status"] in ("released", "voided")
        assert (reserved.status_code == 201) == (voided.json()["status"] == "released")
    assert await levels(client, "SKU-A") == (1000, 0, 1000)


@pytest.mark.parametrize("checkout_id", ["x" * 65, "a%0Ab"])
async def test_a_bad_checkout_id_is_a_422_naming_it(
    client: httpx.AsyncClient, checkout_id: str
) -> None:
    """An over-long checkout id or one with control characters changes nothing."""
    problem = assert_problem(await void(client, checkout_id), 422)
    assert problem["errors"][0]["loc"] == ["path", "checkout_id"]
