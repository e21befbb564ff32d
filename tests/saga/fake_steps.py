"""The saga steps over the in-memory services, shaped like the real ones (kind, keys, results)."""

from __future__ import annotations

from typing import Any

from orchestrator.saga.steps import Outcome, SagaContext, SagaStep, StepKind
from tests.saga.fakes import FakeServices


class FakeWarehouseStep:
    """The warehouse step over the fakes: reserve, settle by checkout, release."""

    name = "warehouse"
    kind = StepKind.COMPENSATABLE

    def __init__(self, services: FakeServices) -> None:
        self.services = services

    def applies(self, _ctx: SagaContext) -> bool:
        return True

    async def execute(self, ctx: SagaContext) -> Outcome:
        status, reservation = await self.services.reserve(
            checkout_id=ctx.checkout_id, key=ctx.key(self.name, "reserve")
        )
        return status, {"reservation_id": reservation["id"], "status": reservation["status"]}

    async def settle(self, ctx: SagaContext) -> dict[str, Any] | None:
        found = await self.services.find_reservation(checkout_id=ctx.checkout_id)
        return {"reservation_id": found["id"], "status": found["status"]} if found else None

    async def compensate(self, ctx: SagaContext, result: dict[str, Any]) -> Outcome:
        status, reservation = await self.services.release(
            reservation_id=result["reservation_id"], key=ctx.key(self.name, "release")
        )
        return status, {"reservation_id": reservation["id"], "status": reservation["status"]}


class FakeRewardsStep:
    """The rewards step over the fakes: credit members only, settle by checkout, reverse."""

    name = "rewards"
    kind = StepKind.COMPENSATABLE

    def __init__(self, services: FakeServices) -> None:
        self.services = services

    def applies(self, ctx: SagaContext) -> bool:
        return bool(ctx.customer.get("rewards_member"))

    async def execute(self, ctx: SagaContext) -> Outcome:
        status, credit = await self.services.credit(
            checkout_id=ctx.checkout_id, points=ctx.points, key=ctx.key(self.name, "credit")
        )
        return status, {"transaction_id": credit["id"], "points": credit["points"]}

    async def settle(self, ctx: SagaContext) -> dict[str, Any] | None:
        found = await self.services.find_credit(checkout_id=ctx.checkout_id)
        return {"transaction_id": found["id"], "points": found["points"]} if found else None

    async def compensate(self, ctx: SagaContext, result: dict[str, Any]) -> Outcome:
        status, reversal = await self.services.reverse(
            transaction_id=result["transaction_id"], key=ctx.key(self.name, "reverse")
        )
        return status, {"transaction_id": result["transaction_id"], "reversal_id": reversal["id"]}


class FakeEmailStep:
    """The email step over the fakes: confirm (retried forever), settle, send the cancellation."""

    name = "email"
    kind = StepKind.RETRIABLE

    def __init__(self, services: FakeServices) -> None:
        self.services = services

    def applies(self, _ctx: SagaContext) -> bool:
        return True

    async def execute(self, ctx: SagaContext) -> Outcome:
        status, message = await self.services.send_email(
            checkout_id=ctx.checkout_id,
            template="order_confirmation",
            key=ctx.key(self.name, "confirmation"),
        )
        return status, {"email_id": message["id"], "status": message["status"]}

    async def settle(self, ctx: SagaContext) -> dict[str, Any] | None:
        found = await self.services.find_email(
            checkout_id=ctx.checkout_id, template="order_confirmation"
        )
        return {"email_id": found["id"], "status": found["status"]} if found else None

    async def compensate(self, ctx: SagaContext, result: dict[str, Any]) -> Outcome:
        status, message = await self.services.send_email(
            checkout_id=ctx.checkout_id,
            template="order_cancelled",
            key=ctx.key(self.name, "cancellation"),
        )
        return status, {"email_id": result["email_id"], "cancellation_email_id": message["id"]}


def fake_steps(services: FakeServices) -> dict[str, SagaStep]:
    """The three steps over ``services``, by name."""
    steps: list[SagaStep] = [
        FakeWarehouseStep(services),
        FakeRewardsStep(services),
        FakeEmailStep(services),
    ]
    return {step.name: step for step in steps}
