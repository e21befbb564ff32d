"""Bad input: every refusal is problem+json, names the invalid fields and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support import assert_problem
from tests.warehouse_service.helpers import levels, reservations_of, stock

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-never-echoed"
GOOD_LINE = {"sku": "SKU-A", "quantity": 1}


def _reservation(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"checkout_id": "c-1", "items": [dict(GOOD_LINE)]}
    body.update(changes)
    return body


# (request body, locations that must be named)
INVALID_RESERVATIONS: dict[str, tuple[Any, list[list[str | int]]]] = {
    "quantity-0": (
        _reservation(items=[{"sku": "SKU-A", "quantity": 0}]),
        [["body", "items", 0, "quantity"]],
    ),
    "quantity-1001": (
        _reservation(items=[{"sku": "SKU-A", "quantity": 1001}]),
        [["body", "items", 0, "quantity"]],
    ),
    "quantity-negative": (
        _reservation(items=[{"sku": "SKU-A", "quantity": -1}]),
        [["body", "items", 0, "quantity"]],
    ),
    "quantity-not-integer": (
        _reservation(items=[{"sku": "SKU-A", "quantity": 1.5}]),
        [["body", "items", 0, "quantity"]],
    ),
    "sku-too-long": (
        _reservation(items=[{"sku": "S" * 65, "quantity": 1}]),
        [["body", "items", 0, "sku"]],
    ),
    "sku-empty": (
        _reservation(items=[{"sku": "", "quantity": 1}]),
        [["body", "items", 0, "sku"]],
    ),
    "sku-control-character": (
        _reservation(items=[{"sku": "SKU-\x00A", "quantity": 1}]),
        [["body", "items", 0, "sku"]],
    ),
    "checkout-id-control-character": (_reservation(checkout_id="c-\n1"), [["body", "checkout_id"]]),
    "missing-items": ({"checkout_id": "c-1"}, [["body", "items"]]),
    "empty-items": (_reservation(items=[]), [["body", "items"]]),
    "too-many-items": (_reservation(items=[dict(GOOD_LINE)] * 101), [["body", "items"]]),
    "missing-checkout-id": ({"items": [dict(GOOD_LINE)]}, [["body", "checkout_id"]]),
    "checkout-id-too-long": (_reservation(checkout_id="c" * 65), [["body", "checkout_id"]]),
    "extra-field": (_reservation(coupon=SECRET), [["body", "coupon"]]),
    "extra-field-in-line": (
        _reservation(items=[{"sku": "SKU-A", "quantity": 1, "price": SECRET}]),
        [["body", "items", 0, "price"]],
    ),
    "every-field-wrong": (
        {"checkout_id": "", "items": [{"sku": "S" * 65, "quantity": 0}, {"quantity": 2}]},
        [
            ["body", "checkout_id"],
            ["body", "items", 0, "sku"],
            ["body", "items", 0, "quantity"],
            ["body", "items", 1, "sku"],
        ],
    ),
    "not-an-object": ([SECRET], [["body"]]),
}


@pytest.fixture
async def stocked(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The client, with SKU-A stocked with 10 units."""
    await stock(client, "SKU-A", 10)
    return client


async def _assert_nothing_changed(client: httpx.AsyncClient) -> None:
    assert await levels(client, "SKU-A") == (10, 0, 10)
    assert await reservations_of(client, "c-1") == []


@pytest.mark.parametrize(
    ("body", "locs"), list(INVALID_RESERVATIONS.values()), ids=list(INVALID_RESERVATIONS)
)
async def test_invalid_reservation_names_every_field(
    stocked: httpx.AsyncClient, body: Any, locs: list[list[str | int]]
) -> None:
    """An invalid reservation is a 422 problem listing each invalid field, echoing no input."""
    response = await stocked.post("/reservations", json=body)

    problem = assert_problem(response, 422)
    assert sorted(e["loc"] for e in problem["errors"]) == sorted(locs)
    for error in problem["errors"]:
        assert error.keys() == {"loc", "msg", "type"}
        assert error["msg"]
        assert error["type"]
    assert SECRET not in response.text
    await _assert_nothing_changed(stocked)


@pytest.mark.parametrize(
    ("sku", "body", "locs"),
    [
        ("SKU-A", {"on_hand": -1}, [["body", "on_hand"]]),
        ("SKU-A", {"on_hand": 1_000_000_001}, [["body", "on_hand"]]),
        ("SKU-A", {"on_hand": "many"}, [["body", "on_hand"]]),
        ("SKU-A", {}, [["body", "on_hand"]]),
        ("SKU-A", {"on_hand": 5, "reserved": 0}, [["body", "reserved"]]),
        ("S" * 65, {"on_hand": 5}, [["path", "sku"]]),
        ("SKU%01A", {"on_hand": 5}, [["path", "sku"]]),
    ],
    ids=[
        "negative",
        "too-large",
        "not-a-number",
        "missing",
        "extra-field",
        "sku-too-long",
        "sku-control-character",
    ],
)
async def test_invalid_inventory_update_is_422(
    stocked: httpx.AsyncClient, sku: str, body: dict[str, Any], locs: list[list[str]]
) -> None:
    """An invalid stock update is a 422 problem naming the field; the stock stays as it was."""
    problem = assert_problem(await stocked.put(f"/inventory/{sku}", json=body), 422)

    assert [e["loc"] for e in problem["errors"]] == locs
    assert await levels(stocked, "SKU-A") == (10, 0, 10)
    assert_problem(await stocked.get(f"/inventory/{'S' * 64}"), 404)


async def test_malformed_json_is_422(stocked: httpx.AsyncClient) -> None:
    """A body that is not valid JSON is a 422 problem; nothing is held."""
    for path, method in (("/reservations", "POST"), ("/inventory/SKU-A", "PUT")):
        response = await stocked.request(
            method,
            path,
            content=b'{"checkout_id": "c-1", "items": [',
            headers={"Content-Type": "application/json"},
        )
        problem = assert_problem(response, 422)
        assert problem["errors"]
        assert all(e["loc"][0] == "body" for e in problem["errors"])
    await _assert_nothing_changed(stocked)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_non_json_content_type_is_415(
    stocked: httpx.AsyncClient, content_type: str | None
) -> None:
    """A JSON body sent as another media type (or none) is a 415 problem; nothing is held."""
    raw = json.dumps(_reservation()).encode()
    headers = {"Content-Type": content_type} if content_type else {}

    response = await stocked.post("/reservations", content=raw, headers=headers)
    put = await stocked.put("/inventory/SKU-A", content=b'{"on_hand": 1}', headers=headers)

    assert_problem(response, 415)
    assert_problem(put, 415)
    await _assert_nothing_changed(stocked)


async def test_body_over_64_kib_is_413(stocked: httpx.AsyncClient) -> None:
    """A body over 64 KiB is a 413 problem, even if it would be valid; nothing is held."""
    lines = [dict(GOOD_LINE) for _ in range(100)]
    body = _reservation(items=lines, checkout_id="c-1")
    raw = json.dumps(body).encode()
    padded = raw[:-1] + b"," + b'"pad": "' + b"x" * (64 * 1024) + b'"}'
    assert len(padded) > 64 * 1024

    response = await stocked.post(
        "/reservations", content=padded, headers={"Content-Type": "application/json"}
    )

    assert_problem(response, 413)
    await _assert_nothing_changed(stocked)


async def test_body_of_exactly_64_kib_is_read(stocked: httpx.AsyncClient) -> None:
    """A body of exactly 64 KiB passes the size limit and reaches validation."""
    head = b'{"checkout_id": "c-1", "items": [{"sku": "SKU-A", "quantity": 1}], "pad": "'
    raw = head + b"x" * (64 * 1024 - len(head) - 2) + b'"}'
    assert len(raw) == 64 * 1024

    response = await stocked.post(
        "/reservations", content=raw, headers={"Content-Type": "application/json"}
    )

    problem = assert_problem(response, 422)
    assert [e["loc"] for e in problem["errors"]] == [["body", "pad"]]
    await _assert_nothing_changed(stocked)
