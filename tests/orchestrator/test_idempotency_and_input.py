"""Idempotent replays of POST /checkouts, and bad input that must change nothing anywhere."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from tests.faults import FaultyTransport
from tests.suite import Suite, checkout_body, running_suite

pytestmark = pytest.mark.anyio


async def assert_nothing_stored(suite: Suite) -> None:
    assert (await suite.orchestrator.get("/checkouts")).json() == {"items": [], "next_cursor": None}
    assert (await suite.inventory("SKU-001"))["reserved"] == 0
    assert await suite.balance("c-42") is None
    assert await suite.emails("ada@example.com") == []


async def test_same_key_replays_the_first_answer(suite: Suite) -> None:
    """The same key and body returns the first answer again and applies nothing twice."""
    headers = {"Idempotency-Key": "order-1001"}
    first = await suite.orchestrator.post("/checkouts", json=checkout_body(), headers=headers)
    again = await suite.orchestrator.post("/checkouts", json=checkout_body(), headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["location"] == first.headers["location"]
    assert len((await suite.orchestrator.get("/checkouts")).json()["items"]) == 1
    assert (await suite.inventory("SKU-001"))["reserved"] == 2
    assert await suite.balance("c-42") == 39
    assert len(await suite.emails("ada@example.com")) == 1


async def test_same_meaning_in_another_form_is_a_replay(suite: Suite) -> None:
    """Key order, a number for a price string and an omitted default do not change the meaning."""
    headers = {"Idempotency-Key": "order-1002"}
    body = checkout_body()
    first = await suite.orchestrator.post("/checkouts", json=body, headers=headers)
    reordered = {
        "items": [{"unit_price": 19.99, "quantity": 2, "sku": "SKU-001"}],
        "customer": body["customer"],
    }
    again = await suite.orchestrator.post("/checkouts", json=reordered, headers=headers)

    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]


async def test_same_key_with_another_body_is_422(suite: Suite) -> None:
    """Reusing a key for a different checkout is refused and starts nothing."""
    headers = {"Idempotency-Key": "order-1003"}
    await suite.orchestrator.post("/checkouts", json=checkout_body(), headers=headers)
    other = checkout_body(items=[{"sku": "SKU-002", "quantity": 1, "unit_price": "5.00"}])
    response = await suite.orchestrator.post("/checkouts", json=other, headers=headers)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "different" in response.json()["detail"]
    assert len((await suite.orchestrator.get("/checkouts")).json()["items"]) == 1
    assert (await suite.inventory("SKU-002"))["reserved"] == 0


async def test_a_key_in_flight_is_409(database_url: Any) -> None:
    """A repeat while the first request is still unanswered is 409 and starts nothing."""
    faults: dict[str, FaultyTransport] = {}

    def wrap(name: str, transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        faults[name] = FaultyTransport(transport)
        return faults[name]

    async with running_suite(database_url, wrap=wrap) as suite:
        await suite.stock("SKU-001", 10)
        faults["warehouse"].add("POST", "/reservations", "delay", delay=0.5)
        headers = {"Idempotency-Key": "order-1004"}
        answers: dict[str, httpx.Response] = {}

        async def first() -> None:
            answers["first"] = await suite.orchestrator.post(
                "/checkouts", json=checkout_body(), headers=headers
            )

        async with anyio.create_task_group() as group:
            group.start_soon(first)
            await anyio.sleep(0.2)
            answers["twin"] = await suite.orchestrator.post(
                "/checkouts", json=checkout_body(), headers=headers
            )
        after = await suite.orchestrator.post("/checkouts", json=checkout_body(), headers=headers)

        assert answers["twin"].status_code == 409
        assert answers["twin"].headers["retry-after"] == "1"
        assert answers["first"].status_code == 201
        assert after.status_code == 201
        assert after.json() == answers["first"].json()
        assert len((await suite.orchestrator.get("/checkouts")).json()["items"]) == 1
        assert (await suite.inventory("SKU-001"))["reserved"] == 2


BAD_BODIES: list[tuple[str, Any, set[str]]] = [
    ("empty object", {}, {"body.customer", "body.items"}),
    ("no items", checkout_body() | {"items": []}, {"body.items"}),
    (
        "101 items",
        checkout_body() | {"items": [{"sku": "S", "quantity": 1, "unit_price": "1"}] * 101},
        {"body.items"},
    ),
    (
        "every line field wrong",
        checkout_body(items=[{"sku": "", "quantity": 0, "unit_price": "1.001"}]),
        {"body.items.0.sku", "body.items.0.quantity", "body.items.0.unit_price"},
    ),
    (
        "quantity too big",
        checkout_body(items=[{"sku": "S", "quantity": 1001, "unit_price": "1"}]),
        {"body.items.0.quantity"},
    ),
    (
        "negative price",
        checkout_body(items=[{"sku": "S", "quantity": 1, "unit_price": "-1"}]),
        {"body.items.0.unit_price"},
    ),
    (
        "price too high",
        checkout_body(items=[{"sku": "S", "quantity": 1, "unit_price": "1000000.01"}]),
        {"body.items.0.unit_price"},
    ),
    (
        "price not a number",
        checkout_body(items=[{"sku": "S", "quantity": 1, "unit_price": "cheap"}]),
        {"body.items.0.unit_price"},
    ),
    (
        "sku too long",
        checkout_body(items=[{"sku": "S" * 65, "quantity": 1, "unit_price": "1"}]),
        {"body.items.0.sku"},
    ),
    ("bad email", checkout_body(email="not-an-address"), {"body.customer.email"}),
    (
        "customer fields",
        checkout_body() | {"customer": {"id": "", "email": "a@example.com", "name": "x" * 201}},
        {"body.customer.id", "body.customer.name"},
    ),
    ("lower-case currency", checkout_body() | {"currency": "usd"}, {"body.currency"}),
    ("unknown field", checkout_body() | {"coupon": "FREE"}, {"body.coupon"}),
    ("not an object", [1, 2], {"body"}),
]


@pytest.mark.parametrize(("case", "body", "fields"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
async def test_bad_body_is_422_naming_every_field(
    suite: Suite, case: str, body: Any, fields: set[str]
) -> None:
    """Invalid bodies get one 422 problem naming every invalid field, and nothing is stored."""
    response = await suite.orchestrator.post(
        "/checkouts", json=body, headers={"Idempotency-Key": f"bad-{case}"}
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    named = {".".join(str(p) for p in error["loc"]) for error in problem["errors"]}
    assert fields <= named, named
    await assert_nothing_stored(suite)


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b'{"customer": ', {"content-type": "application/json"}, 422),
        (b"customer=ada", {"content-type": "application/x-www-form-urlencoded"}, 415),
        (b"{}", {"content-type": "text/plain"}, 415),
        (b"x" * (64 * 1024 + 1), {"content-type": "application/json"}, 413),
        (b"", {}, 422),
    ],
    ids=["malformed JSON", "form", "text/plain", "over 64 KiB", "no body"],
)
async def test_unreadable_request_is_refused(
    suite: Suite, content: bytes, headers: dict[str, str], status: int
) -> None:
    """Malformed, oversized or non-JSON bodies get a problem+json 4xx, and nothing is stored."""
    response = await suite.orchestrator.post("/checkouts", content=content, headers=headers)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status
    await assert_nothing_stored(suite)


@pytest.mark.parametrize("key", ["", "k" * 256, "has space", "tab\there", "é"])
async def test_bad_idempotency_key_is_422(suite: Suite, key: str) -> None:
    """A key that is not 1–255 visible ASCII characters is refused, naming the header."""
    response = await suite.orchestrator.post(
        "/checkouts", json=checkout_body(), headers=[(b"Idempotency-Key", key.encode("utf-8"))]
    )

    assert response.status_code == 422
    assert ["header", "Idempotency-Key"] in [e["loc"] for e in response.json()["errors"]]
    await assert_nothing_stored(suite)


async def test_unknown_routes_and_methods_are_problems(suite: Suite) -> None:
    """404 and 405 from the router are problem+json too."""
    missing = await suite.orchestrator.get("/nowhere")
    wrong_method = await suite.orchestrator.delete("/checkouts")

    assert (missing.status_code, missing.headers["content-type"]) == (
        404,
        "application/problem+json",
    )
    assert (wrong_method.status_code, wrong_method.headers["content-type"]) == (
        405,
        "application/problem+json",
    )
