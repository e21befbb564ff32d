"""The three saga steps, declared in one place with their kind, action, settle and compensation.

Kinds:
- compensatable: its effect can be undone (warehouse reservation → release; rewards credit →
  reversal). Transient failures are retried within the step's policy; a refusal or exhausted
  retries fail the checkout, and completed compensatable steps are undone in reverse order.
- retriable: the confirmation email cannot be taken back, so once reached it is retried until
  it succeeds. If a later step fails (an order that puts the email first), its compensation is
  a second message, ``order_cancelled``.

``settle`` reads a step's effect by its natural key (one reservation, one credit, one message
per checkout) to learn whether a call whose answer was lost was applied, before compensating.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.clients import ServiceClients


class StepKind(enum.Enum):
    COMPENSATABLE = "compensatable"
    RETRIABLE = "retriable"


@dataclass(frozen=True)
class SagaContext:
    """What the steps need to know about a checkout."""

    checkout_id: str
    customer: dict[str, Any]
    items: list[dict[str, Any]]
    currency: str
    total: str
    points: int

    def key(self, step: str, action: str) -> str:
        """The Idempotency-Key of one action of one step of this checkout."""
        return f"{self.checkout_id}:{step}:{action}"

    def email_context(self) -> dict[str, Any]:
        return {
            "customer_name": self.customer["name"],
            "checkout_id": self.checkout_id,
            "items": self.items,
            "total": self.total,
            "currency": self.currency,
            "points": self.points,
        }


Outcome = tuple[int, dict[str, Any]]


class SagaStep(Protocol):
    """One step of the checkout saga."""

    name: str
    kind: StepKind

    def applies(self, ctx: SagaContext) -> bool:
        """Whether this checkout needs the step at all (else it is ``skipped``)."""

    async def execute(self, ctx: SagaContext) -> Outcome:
        """Apply the step; returns the HTTP status and a summary kept in the journal."""

    async def settle(self, ctx: SagaContext) -> dict[str, Any] | None:
        """The step's effect if the service recorded it, else None."""

    async def compensate(self, ctx: SagaContext, result: dict[str, Any]) -> Outcome:
        """Undo the step's effect (or, for the email, send the cancellation)."""


class WarehouseStep:
    name = "warehouse"
    kind = StepKind.COMPENSATABLE

    def __init__(self, clients: ServiceClients) -> None:
        self.clients = clients

    def applies(self, _ctx: SagaContext) -> bool:
        return True

    async def execute(self, ctx: SagaContext) -> Outcome:
        status, reservation = await self.clients.reserve(
            checkout_id=ctx.checkout_id, items=ctx.items, key=ctx.key(self.name, "reserve")
        )
        return status, {"reservation_id": reservation.id, "status": reservation.status}

    async def settle(self, ctx: SagaContext) -> dict[str, Any] | None:
        reservation = await self.clients.find_reservation(checkout_id=ctx.checkout_id)
        return (
            {"reservation_id": reservation.id, "status": reservation.status}
            if reservation
            else None
        )

    async def compensate(self, ctx: SagaContext, result: dict[str, Any]) -> Outcome:
        status, reservation = await self.clients.release(
            reservation_id=result["reservation_id"], key=ctx.key(self.name, "release")
        )
        return status, {"reservation_id": reservation.id, "status": reservation.status}


class RewardsStep:
    name = "rewards"
    kind = StepKind.COMPENSATABLE

    def __init__(self, clients: ServiceClients) -> None:
        self.clients = clients

    def applies(self, ctx: SagaContext) -> bool:
        return bool(ctx.customer.get("rewards_member"))

    async def execute(self, ctx: SagaContext) -> Outcome:
        status, credit = await self.clients.credit(
            customer_id=ctx.customer["id"],
            checkout_id=ctx.checkout_id,
            points=ctx.points,
            key=ctx.key(self.name, "credit"),
        )
        return status, {"transaction_id": credit.id, "points": credit.points}

    async def settle(self, ctx: SagaContext) -> dict[str, Any] | None:
        credit = await self.clients.find_credit(checkout_id=ctx.checkout_id)
        return {"transaction_id": credit.id, "points": credit.points} if credit else None

    async def compensate(self, ctx: SagaContext, result: dict[str, Any]) -> Outcome:
        status, reversal = await self.clients.reverse(
            transaction_id=result["transaction_id"], key=ctx.key(self.name, "reverse")
        )
        return status, {"transaction_id": result["transaction_id"], "reversal_id": reversal.id}


class EmailStep:
    name = "email"
    kind = StepKind.RETRIABLE

    def __init__(self, clients: ServiceClients) -> None:
        self.clients = clients

    def applies(self, _ctx: SagaContext) -> bool:
        return True

    async def execute(self, ctx: SagaContext) -> Outcome:
        status, message = await self.clients.send_email(
            to=ctx.customer["email"],
            template="order_confirmation",
            checkout_id=ctx.checkout_id,
            context=ctx.email_context(),
            key=ctx.key(self.name, "confirmation"),
        )
        return status, {"email_id": message.id, "status": message.status}

    async def settle(self, ctx: SagaContext) -> dict[str, Any] | None:
        message = await self.clients.find_email(
            checkout_id=ctx.checkout_id, template="order_confirmation"
        )
        return {"email_id": message.id, "status": message.status} if message else None

    async def compensate(self, ctx: SagaContext, result: dict[str, Any]) -> Outcome:
        status, message = await self.clients.send_email(
            to=ctx.customer["email"],
            template="order_cancelled",
            checkout_id=ctx.checkout_id,
            context=ctx.email_context(),
            key=ctx.key(self.name, "cancellation"),
        )
        return status, {"email_id": result["email_id"], "cancellation_email_id": message.id}


def build_steps(clients: ServiceClients) -> dict[str, SagaStep]:
    """Every step the saga knows, by name."""
    steps: list[SagaStep] = [WarehouseStep(clients), RewardsStep(clients), EmailStep(clients)]
    return {step.name: step for step in steps}
