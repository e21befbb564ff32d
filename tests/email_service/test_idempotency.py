"""Idempotency-Key and concurrent requests on POST /emails."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest

from email_service.main import create_app
from email_service.settings import Settings
from tests.email_service.helpers import (
    GatedMailer,
    email_body,
    emails_of,
    send,
)
from tests.support import assert_problem, running

pytestmark = pytest.mark.anyio


async def test_replay_with_same_key_returns_first_answer(client: httpx.AsyncClient) -> None:
    """The same key and body replays the first 201 and body, marked replayed; one message exists."""
    first = await send(client, email_body("c-1"), key="c-1-email-confirm")
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers

    for _ in range(2):
        again = await send(client, email_body("c-1"), key="c-1-email-confirm")
        assert again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["location"] == first.headers["location"]
        assert again.json() == first.json()

    assert await emails_of(client, "c-1") == [first.json()]


async def test_same_key_with_different_body_is_422(client: httpx.AsyncClient) -> None:
    """Reusing a key with a body of another meaning is a 422 problem and stores nothing."""
    first = await send(client, email_body("c-1"), key="k-1")
    assert first.status_code == 201, first.text

    reused = await send(client, email_body("c-2"), key="k-1")

    problem = assert_problem(reused, 422)
    assert problem["type"] == "urn:checkout-suite:problem:idempotency-key-reused"
    assert await emails_of(client, "c-2") == []
    assert await emails_of(client, "c-1") == [first.json()]


async def test_key_order_of_json_does_not_change_meaning(client: httpx.AsyncClient) -> None:
    """The same body with keys in another order is the same request and replays."""
    body = email_body("c-1")
    first = await send(client, body, key="k-1")
    assert first.status_code == 201, first.text
    reordered: dict[str, Any] = dict(reversed(list(body.items())))

    again = await send(client, reordered, key="k-1")

    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"


async def _concurrently(
    client: httpx.AsyncClient, mailer: GatedMailer, second: Callable[[], Any]
) -> tuple[httpx.Response, httpx.Response]:
    """Start one POST, run ``second`` while its delivery is held open, then let it finish."""
    responses: dict[str, httpx.Response] = {}

    async def first() -> None:
        responses["first"] = await send(client, email_body("c-1"), key="k-1")

    async with anyio.create_task_group() as group:
        group.start_soon(first)
        with anyio.fail_after(10):
            await mailer.started.wait()
        responses["second"] = await second()
        mailer.release.set()
    return responses["first"], responses["second"]


async def test_request_during_delivery_is_409_and_delivers_once(email_database: str) -> None:
    """While a message is being delivered, the same request is a 409 with Retry-After; it is delivered once."""
    mailer = GatedMailer()
    async with running(create_app(Settings(database_url=email_database), mailer=mailer)) as client:
        first, second = await _concurrently(
            client, mailer, lambda: send(client, email_body("c-1"), key="k-1")
        )
        replay = await send(client, email_body("c-1"), key="k-1")

        assert first.status_code == 201, first.text
        problem = assert_problem(second, 409)
        assert problem["type"] == "urn:checkout-suite:problem:email-delivery-in-progress"
        assert int(second.headers["retry-after"]) >= 1
        assert replay.status_code == 201
        assert replay.json() == first.json()
        assert len(mailer.delivered) == 1
        assert await emails_of(client, "c-1") == [first.json()]


async def test_natural_key_twin_during_delivery_is_409(email_database: str) -> None:
    """A keyless request for the checkout's message while it is delivered is 409, not a second email."""
    mailer = GatedMailer()
    async with running(create_app(Settings(database_url=email_database), mailer=mailer)) as client:
        first, second = await _concurrently(client, mailer, lambda: send(client, email_body("c-1")))
        later = await send(client, email_body("c-1"))

        assert first.status_code == 201, first.text
        assert_problem(second, 409)
        assert later.status_code == 200
        assert later.json() == first.json()
        assert len(mailer.delivered) == 1


async def test_concurrent_requests_deliver_once(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Many simultaneous requests for one checkout's email record one message and deliver it once."""
    caplog.set_level(logging.INFO, logger="email_service.delivery")
    responses: list[httpx.Response] = []

    async def post() -> None:
        responses.append(await send(client, email_body("c-1")))

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(post)

    statuses = sorted(response.status_code for response in responses)
    assert statuses.count(201) == 1, [r.text for r in responses]
    assert set(statuses) <= {200, 201, 409}
    [message] = await emails_of(client, "c-1")
    assert message["status"] == "logged"
    assert message["attempts"] == 1
    assert len([r for r in caplog.records if r.name == "email_service.delivery"]) == 1
