"""Bad input: every refusal is problem+json and changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.rewards_service.helpers import assert_account, credit
from tests.support import assert_problem

pytestmark = pytest.mark.anyio

VALID = {"checkout_id": "chk-2", "points": 5}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({**VALID, "points": -1}, "points", id="negative-points"),
        pytest.param({**VALID, "points": 10**12 + 1}, "points", id="too-many-points"),
        pytest.param({**VALID, "points": "5"}, "points", id="points-as-string"),
        pytest.param({**VALID, "points": 1.5}, "points", id="fractional-points"),
        pytest.param({**VALID, "points": True}, "points", id="points-as-bool"),
        pytest.param({**VALID, "points": None}, "points", id="null-points"),
        pytest.param({"checkout_id": "chk-2"}, "points", id="missing-points"),
        pytest.param({"points": 5}, "checkout_id", id="missing-checkout"),
        pytest.param({**VALID, "checkout_id": ""}, "checkout_id", id="empty-checkout"),
        pytest.param({**VALID, "checkout_id": "x" * 65}, "checkout_id", id="long-checkout"),
        pytest.param({**VALID, "checkout_id": 123}, "checkout_id", id="checkout-as-int"),
        pytest.param({**VALID, "customer_id": "c-2"}, "customer_id", id="extra-field"),
    ],
)
async def test_invalid_body_is_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    """An invalid credit body is a 422 problem naming the field, and no points move."""
    await credit(client, "c-1", "chk-1", 10)

    response = await client.post("/accounts/c-1/transactions", json=body)

    problem = assert_problem(response, 422)
    assert ["body", field] in [error["loc"] for error in problem["errors"]]
    await assert_account(client, "c-1", balance=10, entries=1)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"[]", id="array"),
        pytest.param(b'"points"', id="string"),
        pytest.param(b'{"checkout_id": "chk-2", "points": 5', id="malformed"),
        pytest.param(b"", id="empty"),
    ],
)
async def test_body_that_is_not_an_object_is_422(client: httpx.AsyncClient, raw: bytes) -> None:
    """A JSON body that is not a credit object is a 422 problem and credits nothing."""
    response = await client.post(
        "/accounts/c-1/transactions", content=raw, headers={"Content-Type": "application/json"}
    )

    assert "errors" in assert_problem(response, 422)
    await assert_account(client, "c-1", balance=None, entries=0)


async def test_non_json_content_type_is_415(client: httpx.AsyncClient) -> None:
    """A body sent as anything but JSON is a 415 problem and credits nothing."""
    response = await client.post(
        "/accounts/c-1/transactions",
        content=b'{"checkout_id": "chk-1", "points": 5}',
        headers={"Content-Type": "text/plain"},
    )

    assert_problem(response, 415)
    await assert_account(client, "c-1", balance=None, entries=0)


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    """A body over 64 KiB is a 413 problem and credits nothing."""
    response = await client.post(
        "/accounts/c-1/transactions", json={"checkout_id": "chk-1", "points": 5, "pad": "x" * 70000}
    )

    assert_problem(response, 413)
    await assert_account(client, "c-1", balance=None, entries=0)


async def test_customer_id_over_200_characters_is_422(client: httpx.AsyncClient) -> None:
    """A customer id longer than 200 characters is a 422 problem and opens no account."""
    customer_id = "c" * 201

    response = await credit(client, customer_id, "chk-1", 5)

    problem = assert_problem(response, 422)
    assert problem["errors"][0]["loc"] == ["path", "customer_id"]
    assert_problem(await client.get(f"/accounts/{customer_id}"), 422)
    await assert_account(client, "c" * 200, balance=None, entries=0)


@pytest.mark.parametrize(
    "url",
    [
        "/accounts/c-1/transactions?limit=0",
        "/accounts/c-1/transactions?limit=201",
        "/accounts/c-1/transactions?limit=ten",
        "/transactions",
        "/transactions?checkout_id=",
    ],
)
async def test_invalid_query_is_422(client: httpx.AsyncClient, url: str) -> None:
    """A listing with a missing or out-of-range parameter is a 422 problem."""
    await credit(client, "c-1", "chk-1", 10)

    problem = assert_problem(await client.get(url), 422)

    assert problem["errors"][0]["loc"][0] == "query"


async def test_unknown_path_and_method_are_problems(client: httpx.AsyncClient) -> None:
    """Router 404 and 405 answers are problem+json too, and change nothing."""
    assert_problem(await client.get("/nothing-here"), 404)
    assert_problem(await client.delete("/accounts/c-1"), 405)
    assert_problem(await client.put("/accounts/c-1/transactions", json=VALID), 405)
    await assert_account(client, "c-1", balance=None, entries=0)
