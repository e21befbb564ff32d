"""Recording, rendering and logging emails (no SMTP_URL), and reading them back."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.email_service.helpers import (
    ADA,
    email_body,
    emails_of,
    read_email,
    send,
)
from tests.support import assert_problem

pytestmark = pytest.mark.anyio


async def test_confirmation_is_rendered_recorded_and_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Without SMTP_URL a confirmation is rendered, stored as "logged" and written to the log."""
    caplog.set_level(logging.INFO, logger="email_service.delivery")

    response = await send(client, email_body("c-1"))

    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"/emails/{created['id']}"
    assert created["to"] == ADA
    assert created["template"] == "order_confirmation"
    assert created["checkout_id"] == "c-1"
    assert created["subject"] == "Your order c-1 is confirmed"
    assert created["status"] == "logged"
    assert created["attempts"] == 1
    assert created["last_error"] is None
    assert created["sent_at"] is not None
    assert created["created_at"].endswith(("Z", "+00:00"))

    stored = await read_email(client, created["id"])
    assert stored == {**created, "body": stored["body"]}
    assert "Hello Ada Lovelace," in stored["body"]
    assert "2 × SKU-001 at 19.99 USD" in stored["body"]
    assert "Total: 39.98 USD" in stored["body"]
    assert "You earned 39 reward points" in stored["body"]
    logged = [r.getMessage() for r in caplog.records if r.name == "email_service.delivery"]
    assert len(logged) == 1
    assert "Your order c-1 is confirmed" in logged[0]
    assert ADA in logged[0]
    assert "Hello Ada Lovelace," in logged[0]
    assert await emails_of(client, "c-1") == [created]


async def test_cancellation_template_renders(client: httpx.AsyncClient) -> None:
    """The order_cancelled template renders its own subject and body, with the reason."""
    context = {"customer_name": "Ada Lovelace", "reason": "SKU-003 is out of stock"}
    response = await send(client, email_body("c-9", template="order_cancelled", context=context))

    assert response.status_code == 201, response.text
    assert response.json()["subject"] == "Your order c-9 was cancelled"
    body = (await read_email(client, response.json()["id"]))["body"]
    assert "Hello Ada Lovelace," in body
    assert "has been cancelled" in body
    assert "Reason: SKU-003 is out of stock" in body
    assert "confirmed" not in body


@pytest.mark.parametrize(
    "context",
    [
        {},
        {"customer_name": None, "items": None, "total": None, "points": None},
        {"items": 5, "currency": 7, "customer_name": {"first": "Ada"}},
        {"items": ["SKU-001", {"sku": "SKU-002"}, {"quantity": 0}], "extra": [1, 2]},
    ],
)
async def test_missing_or_odd_context_still_renders(
    client: httpx.AsyncClient, context: dict[str, object]
) -> None:
    """Missing, null or oddly typed context values render with neutral defaults, never a 500."""
    response = await send(client, email_body("c-2", context=context))

    assert response.status_code == 201, response.text
    assert response.json()["status"] == "logged"
    body = (await read_email(client, response.json()["id"]))["body"]
    assert "Order reference: c-2" in body
    assert "None" not in body


async def test_same_checkout_and_template_without_key_gives_one_message(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Posting the same checkout and template again answers 200 with the first message; one is delivered."""
    caplog.set_level(logging.INFO, logger="email_service.delivery")
    first = await send(client, email_body("c-1"))
    assert first.status_code == 201, first.text

    again = await send(client, email_body("c-1", context={"customer_name": "Someone Else"}))

    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert "idempotent-replayed" not in again.headers
    assert await emails_of(client, "c-1") == [first.json()]
    assert len([r for r in caplog.records if r.name == "email_service.delivery"]) == 1


async def test_each_template_of_a_checkout_is_its_own_message(client: httpx.AsyncClient) -> None:
    """A checkout may have one confirmation and one cancellation; both are listed, newest first."""
    confirmation = await send(client, email_body("c-1"))
    cancellation = await send(client, email_body("c-1", template="order_cancelled"))

    assert confirmation.status_code == cancellation.status_code == 201
    listed = await emails_of(client, "c-1")
    assert [e["id"] for e in listed] == [cancellation.json()["id"], confirmation.json()["id"]]


async def test_other_recipient_for_same_checkout_is_409(client: httpx.AsyncClient) -> None:
    """The checkout's message cannot be re-addressed: 409 problem, and nothing changes."""
    first = await send(client, email_body("c-1"))
    assert first.status_code == 201, first.text

    other = await send(client, email_body("c-1", to="grace@example.com"))

    problem = assert_problem(other, 409)
    assert problem["type"] == "urn:checkout-suite:problem:email-recipient-conflict"
    assert await emails_of(client, "c-1") == [first.json()]
    listed = await client.get("/emails", params={"to": "grace@example.com"})
    assert listed.json() == {"items": []}


async def test_list_by_address_is_newest_first_and_limited(client: httpx.AsyncClient) -> None:
    """GET /emails?to= lists that address's messages newest first, at most ``limit``."""
    ids = []
    for n in range(3):
        response = await send(client, email_body(f"c-{n}"))
        ids.append(response.json()["id"])
    await send(client, email_body("c-other", to="grace@example.com"))

    everything = await client.get("/emails", params={"to": ADA})
    two = await client.get("/emails", params={"to": ADA, "limit": 2})
    both_filters = await client.get("/emails", params={"to": ADA, "checkout_id": "c-1"})

    assert [e["id"] for e in everything.json()["items"]] == ids[::-1]
    assert [e["id"] for e in two.json()["items"]] == ids[:0:-1]
    assert [e["id"] for e in both_filters.json()["items"]] == [ids[1]]
    assert "body" not in everything.json()["items"][0]


async def test_address_filter_matches_the_normalised_address(client: httpx.AsyncClient) -> None:
    """The recipient is stored as validated (domain lower-cased), and the filter is read the same way."""
    response = await send(client, email_body("c-1", to="Ada@Example.COM"))
    assert response.status_code == 201, response.text

    listed = await client.get("/emails", params={"to": "Ada@EXAMPLE.com"})

    assert response.json()["to"] == "Ada@example.com"
    assert [e["id"] for e in listed.json()["items"]] == [response.json()["id"]]
