"""The three saga steps, declared in one place with their action and compensation.

What each step can be (refused for good? irrevocable?) and the kind its place in the plan gives
it (compensatable, pivot, retriable) are in ``orchestrator.saga.plan``. The compensations:
- warehouse: the reservation is released; rewards: the credit is reversed;
- email: a confirmation cannot be taken back, so once reached it is retried until it succeeds.
  If a later step fails (a plan that puts the email before the pivot), its compensation is a
  second message, ``order_cancelled``.

Compensatable steps are undone by *voiding the checkout* at the service, not by undoing one
known reservation or credit: the service undoes whatever the checkout holds and refuses anything
for it that arrives later. So a step whose outcome is unknown (its answer was lost, or a request
may still be queued in a slow service or sent by a replica that lost its lease) is compensated
the same way as one that succeeded, without reading first and guessing from what the read saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.clients import ServiceClients


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


@dataclass(frozen=True)
class Compensation:
    """What undoing a step did: ``undid`` is False when its effect never existed (nor ever will)."""

    http_status: int
    summary: dict[str, Any]
    undid: bool


class SagaStep(Protocol):
    """One step of the checkout saga."""

    name: str

    def applies(self, ctx: SagaContext) -> bool:
        """Whether this checkout needs the step at all (else it is ``skipped``)."""

    async def execute(self, ctx: SagaContext) -> Outcome:
        """Apply the step; returns the HTTP status and a summary kept in the journal."""

    async def compensate(self, ctx: SagaContext, result: dict[str, Any] | None) -> Compensation:
        """Undo the step's effect (for the email, send the cancellation).

        ``result`` is what the step's call answered, or None when its outcome is unknown.
        """


class WarehouseStep:
    name = "warehouse"

    def __init__(self, clients: ServiceClients) -> None:
        self.clients = clients

    def applies(self, _ctx: SagaContext) -> bool:
        return True

    async def execute(self, ctx: SagaContext) -> Outcome:
        status, reservation = await self.clients.reserve(
            checkout_id=ctx.checkout_id, items=ctx.items, key=ctx.key(self.name, "reserve")
        )
        return status, {"reservation_id": reservation.id, "status": reservation.status}

    async def compensate(self, ctx: SagaContext, _result: dict[str, Any] | None) -> Compensation:
        status, reservation = await self.clients.void_reservation(
            checkout_id=ctx.checkout_id, key=ctx.key(self.name, "void")
        )
        # "voided": the checkout had no reservation, and now can never get one.
        summary = {"reservation_id": reservation.id, "status": reservation.status}
        return Compensation(status, summary, undid=reservation.status != "voided")


class RewardsStep:
    name = "rewards"

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

    async def compensate(self, ctx: SagaContext, _result: dict[str, Any] | None) -> Compensation:
        status, voided = await self.clients.void_credit(
            checkout_id=ctx.checkout_id, key=ctx.key(self.name, "void")
        )
        # No reversal: the checkout was never credited, and now can never be.
        reversal = voided.reversals[0] if voided.reversals else None
        summary = {
            "transaction_id": reversal.reverses_id if reversal else None,
            "reversal_id": reversal.id if reversal else None,
        }
        return Compensation(status, summary, undid=reversal is not None)


class EmailStep:
    name = "email"

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

    async def compensate(self, ctx: SagaContext, result: dict[str, Any] | None) -> Compensation:
        if result is None:
            # Never a cancellation without a confirmation: with the outcome unknown, look first.
            found = await self.clients.find_email(
                checkout_id=ctx.checkout_id, template="order_confirmation"
            )
            if found is None:
                return Compensation(200, {"email_id": None}, undid=False)
            result = {"email_id": found.id}
        status, message = await self.clients.send_email(
            to=ctx.customer["email"],
            template="order_cancelled",
            checkout_id=ctx.checkout_id,
            context=ctx.email_context(),
            key=ctx.key(self.name, "cancellation"),
        )
        summary = {"email_id": result["email_id"], "cancellation_email_id": message.id}
        return Compensation(status, summary, undid=True)


def build_steps(clients: ServiceClients) -> dict[str, SagaStep]:
    """Every step the saga knows, by name."""
    steps: list[SagaStep] = [WarehouseStep(clients), RewardsStep(clients), EmailStep(clients)]
    return {step.name: step for step in steps}
