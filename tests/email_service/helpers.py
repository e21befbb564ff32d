"""Helpers for email tests: a recording SMTP server, a gated mailer, and requests."""

from __future__ import annotations

import email
import socket
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any, Literal

import anyio
import httpx

from email_service.delivery import Outgoing

ADA = "ada@example.com"
CONFIRMATION_CONTEXT: dict[str, Any] = {
    "customer_name": "Ada Lovelace",
    "total": "39.98",
    "currency": "USD",
    "points": 39,
    "items": [{"sku": "SKU-001", "quantity": 2, "unit_price": "19.99"}],
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class SmtpSink:
    """An aiosmtpd handler that keeps every message it accepts, or refuses them all."""

    refuse_with: str | None = None
    received: list[tuple[list[str], EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        del server, session
        if self.refuse_with is not None:
            return self.refuse_with
        message = email.message_from_bytes(envelope.content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.received.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


class GatedMailer:
    """A mailer whose deliveries wait until ``release`` is set (create it inside a test)."""

    delivered_status: Literal["sent", "logged"] = "logged"
    timeout_s = 5.0

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.delivered: list[Outgoing] = []

    async def deliver(self, message: Outgoing) -> None:
        self.started.set()
        await self.release.wait()
        self.delivered.append(message)


def email_body(
    checkout_id: str = "c-1",
    *,
    to: str = ADA,
    template: str = "order_confirmation",
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``POST /emails`` body."""
    return {
        "to": to,
        "template": template,
        "checkout_id": checkout_id,
        "context": CONFIRMATION_CONTEXT if context is None else context,
    }


async def send(
    client: httpx.AsyncClient, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    """``POST /emails``, with an Idempotency-Key when ``key`` is given."""
    headers = {"Idempotency-Key": key} if key is not None else None
    return await client.post("/emails", json=body, headers=headers)


async def emails_of(client: httpx.AsyncClient, checkout_id: str) -> list[dict[str, Any]]:
    """The messages ``GET /emails?checkout_id=`` lists for a checkout."""
    response = await client.get("/emails", params={"checkout_id": checkout_id})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def read_email(client: httpx.AsyncClient, email_id: str) -> dict[str, Any]:
    """One message with its body, as ``GET /emails/{id}`` shows it."""
    response = await client.get(f"/emails/{email_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
