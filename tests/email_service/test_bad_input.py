"""Bad input: every refusal is problem+json and stores nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.email_service.helpers import ADA, email_body, emails_of, send
from tests.support import assert_problem

pytestmark = pytest.mark.anyio


async def assert_nothing_stored(client: httpx.AsyncClient) -> None:
    """No message exists for the test's checkout or address."""
    assert await emails_of(client, "c-1") == []
    listed = await client.get("/emails", params={"to": ADA})
    assert listed.json() == {"items": []}


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"to": "not-an-address"}, ["body", "to"]),
        ({"template": "newsletter"}, ["body", "template"]),
        ({"checkout_id": ""}, ["body", "checkout_id"]),
        ({"checkout_id": "x" * 65}, ["body", "checkout_id"]),
        ({"checkout_id": "c-1\r\nBcc: eve@example.com"}, ["body", "checkout_id"]),
        ({"checkout_id": "c\x00-1"}, ["body", "checkout_id"]),
        ({"context": ["not", "an", "object"]}, ["body", "context"]),
        ({"subject": "extra"}, ["body", "subject"]),
    ],
)
async def test_invalid_body_is_422_naming_the_field(
    client: httpx.AsyncClient, change: dict[str, Any], loc: list[str]
) -> None:
    """An invalid or extra field is a 422 problem naming it, and stores nothing."""
    response = await send(client, {**email_body("c-1"), **change}, key="k-1")

    problem = assert_problem(response, 422)
    assert loc in [error["loc"] for error in problem["errors"]]
    await assert_nothing_stored(client)


async def test_missing_fields_are_all_named(client: httpx.AsyncClient) -> None:
    """An empty object is a 422 naming every required field."""
    problem = assert_problem(await client.post("/emails", json={}), 422)

    named = {tuple(error["loc"]) for error in problem["errors"]}
    assert named == {("body", "to"), ("body", "template"), ("body", "checkout_id")}


async def test_non_json_body_is_415(client: httpx.AsyncClient) -> None:
    """A body that is not JSON is a 415 problem and stores nothing."""
    response = await client.post(
        "/emails", content=b"to=ada@example.com", headers={"Content-Type": "text/plain"}
    )

    assert_problem(response, 415)
    await assert_nothing_stored(client)


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    """Malformed JSON is a 422 problem and stores nothing."""
    response = await client.post(
        "/emails", content=b'{"to": ', headers={"Content-Type": "application/json"}
    )

    assert_problem(response, 422)
    await assert_nothing_stored(client)


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    """A body over 64 KiB is a 413 problem and stores nothing."""
    body = email_body("c-1", context={"customer_name": "A" * 70_000})

    assert_problem(await send(client, body), 413)
    await assert_nothing_stored(client)


async def test_bad_idempotency_key_is_422(client: httpx.AsyncClient) -> None:
    """An Idempotency-Key that is not 1–255 visible ASCII characters is a 422 and stores nothing."""
    response = await send(client, email_body("c-1"), key="x" * 256)

    problem = assert_problem(response, 422)
    assert ["header", "Idempotency-Key"] in [error["loc"] for error in problem["errors"]]
    await assert_nothing_stored(client)


async def test_list_without_filter_is_422_naming_both(client: httpx.AsyncClient) -> None:
    """GET /emails with neither to nor checkout_id is a 422 problem naming both query fields."""
    problem = assert_problem(await client.get("/emails"), 422)

    assert {tuple(error["loc"]) for error in problem["errors"]} == {
        ("query", "to"),
        ("query", "checkout_id"),
    }


@pytest.mark.parametrize(
    "params",
    [{"to": "nobody"}, {"checkout_id": "c-1", "limit": 0}, {"checkout_id": "c-1", "limit": 201}],
)
async def test_bad_list_parameter_is_422(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    """A malformed address or a limit outside 1–200 is a 422 problem."""
    assert_problem(await client.get("/emails", params=params), 422)


@pytest.mark.parametrize("email_id", ["not-a-uuid", "3f0c2a9e-8a1c-4c7a-9a55-2f1d5f2b7c11"])
async def test_unknown_or_malformed_id_is_404(client: httpx.AsyncClient, email_id: str) -> None:
    """GET /emails/{id} for a malformed or unknown id is a 404 problem."""
    assert_problem(await client.get(f"/emails/{email_id}"), 404)


async def test_unknown_path_and_method_are_problems(client: httpx.AsyncClient) -> None:
    """Router 404 and 405 answers are problem+json too."""
    assert_problem(await client.get("/nowhere"), 404)
    assert_problem(await client.delete("/emails"), 405)
