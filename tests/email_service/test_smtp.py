"""Delivery over real SMTP to an aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from aiosmtpd.controller import Controller

from email_service.main import create_app
from email_service.settings import Settings
from tests.email_service.helpers import (
    ADA,
    SmtpSink,
    email_body,
    emails_of,
    free_port,
    read_email,
    send,
)
from tests.support import assert_problem, running

pytestmark = pytest.mark.anyio


@pytest.fixture
def controllers() -> Iterator[list[Controller]]:
    """SMTP servers a test starts itself; stopped at the end."""
    started: list[Controller] = []
    yield started
    for controller in started:
        controller.stop()


def start_server(controllers: list[Controller], sink: SmtpSink, port: int) -> None:
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    controllers.append(controller)


async def test_confirmation_is_sent_over_smtp(
    smtp_client: httpx.AsyncClient, smtp_sink: tuple[SmtpSink, int]
) -> None:
    """With SMTP_URL the server receives exactly one message with the right To, Subject and body."""
    sink, _ = smtp_sink

    response = await send(smtp_client, email_body("c-1"))

    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "sent"
    assert created["attempts"] == 1
    assert created["sent_at"] is not None
    assert len(sink.received) == 1
    recipients, message = sink.received[0]
    assert recipients == [ADA]
    assert message["To"] == ADA
    assert message["From"] == "Checkout Suite <orders@checkout.example>"
    assert message["Subject"] == "Your order c-1 is confirmed"
    assert message["Message-ID"] == f"<{created['id']}@checkout.example>"
    text = message.get_content()
    assert "Hello Ada Lovelace," in text
    assert "2 × SKU-001 at 19.99 USD" in text
    assert text.replace("\r\n", "\n") == (await read_email(smtp_client, created["id"]))["body"]


async def test_sent_message_is_not_sent_again(
    smtp_client: httpx.AsyncClient, smtp_sink: tuple[SmtpSink, int]
) -> None:
    """Repeating a delivered request (new key or none) answers 200 and sends nothing more."""
    sink, _ = smtp_sink
    first = await send(smtp_client, email_body("c-1"), key="k-1")
    assert first.status_code == 201, first.text

    again = await send(smtp_client, email_body("c-1"))
    other_key = await send(smtp_client, email_body("c-1"), key="k-2")

    assert again.status_code == other_key.status_code == 200
    assert again.json() == other_key.json() == first.json()
    assert len(sink.received) == 1


async def test_server_down_then_up_delivers_once(
    email_database: str, controllers: list[Controller]
) -> None:
    """An unreachable server is a 503 with Retry-After and a failed message; the retry sends it once."""
    port = free_port()
    settings = Settings(database_url=email_database, smtp_url=f"smtp://127.0.0.1:{port}")
    async with running(create_app(settings)) as client:
        down = await send(client, email_body("c-1"), key="k-1")

        problem = assert_problem(down, 503)
        assert problem["type"] == "urn:checkout-suite:problem:email-delivery-failed"
        assert int(down.headers["retry-after"]) > 0
        [failed] = await emails_of(client, "c-1")
        assert failed["id"] == problem["email_id"]
        assert failed["status"] == "failed"
        assert failed["attempts"] == 1
        assert failed["last_error"]
        assert failed["sent_at"] is None

        sink = SmtpSink()
        start_server(controllers, sink, port)
        up = await send(client, email_body("c-1"), key="k-1")
        replay = await send(client, email_body("c-1"), key="k-1")
        without_key = await send(client, email_body("c-1"))

        assert up.status_code == 201, up.text
        assert up.json()["id"] == failed["id"]
        assert up.json()["status"] == "sent"
        assert up.json()["attempts"] == 2
        assert up.json()["last_error"] is None
        assert replay.status_code == 201
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == up.json()
        assert without_key.status_code == 200
        assert len(sink.received) == 1
        assert sink.received[0][1]["Subject"] == "Your order c-1 is confirmed"
        assert await emails_of(client, "c-1") == [up.json()]


async def test_refusing_server_leaves_message_failed_with_reason(
    email_database: str, controllers: list[Controller]
) -> None:
    """A server that refuses the data is a 503; the message is failed and names the reply."""
    port = free_port()
    start_server(controllers, SmtpSink(refuse_with="554 5.7.1 Rejected for testing"), port)
    settings = Settings(database_url=email_database, smtp_url=f"smtp://127.0.0.1:{port}")
    async with running(create_app(settings)) as client:
        refused = await send(client, email_body("c-1"))
        retried = await send(client, email_body("c-1"))

        assert_problem(refused, 503)
        assert_problem(retried, 503)
        [message] = await emails_of(client, "c-1")
        assert message["status"] == "failed"
        assert message["attempts"] == 2
        assert "554" in message["last_error"]
        assert "Rejected for testing" in message["last_error"]
