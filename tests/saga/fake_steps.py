"""The saga steps over the in-memory services, shaped like the real ones (keys, results)."""

from __future__ import annotations

from typing import Any

from orchestrator.saga.steps import Compensation, Outcome, SagaContext, SagaStep
from tests.saga.fakes import FakeServices


class FakeWarehouseStep:
    """The warehouse step over the fakes: reserve, void the checkout to compensate."""

    name = "warehouse"

    def __init__(self, services: FakeServices) -> None:
        self.services = services

    def applies(self, _ctx: SagaContext) -> bool:
        return True

    async def execute(self, ctx: SagaContext) -> Outcome:
        status, reservation = await self.services.reserve(
            checkout_id=ctx.checkout_id, key=ctx.key(self.name, "reserve")
        )
        return status, {"reservation_id": reservation["id"], "status": reservation["status"]}

    async def compensate(self, ctx: SagaContext, _result: dict[str, Any] | None) -> Compensation:
        status, reservation = await self.services.void_reservation(
            checkout_id=ctx.checkout_id, key=ctx.key(self.name, "void")
        )
        summary = {"reservation_id": reservation["id"], "status": reservation["status"]}
        return Compensation(status, summary, undid=reservation["status"] != "voided")


class FakeRewardsStep:
    """The rewards step over the fakes: credit members only, void the checkout to compensate."""

    name = "rewards"

    def __init__(self, services: FakeServices) -> None:
        self.services = services

    def applies(self, ctx: SagaContext) -> bool:
        return bool(ctx.customer.get("rewards_member"))

    async def execute(self, ctx: SagaContext) -> Outcome:
        status, credit = await self.services.credit(
            checkout_id=ctx.checkout_id, points=ctx.points, key=ctx.key(self.name, "credit")
        )
        return status, {"transaction_id": credit["id"], "points": credit["points"]}

    async def compensate(self, ctx: SagaContext, _result: dict[str, Any] | None) -> Compensation:
        status, voided = await self.services.void_credit(
            checkout_id=ctx.checkout_id, key=ctx.key(self.name, "void")
        )
        reversal = voided["reversals"][0] if voided["reversals"] else None
        summary = {
            "transaction_id": reversal["reverses_id"] if reversal else None,
            "reversal_id": reversal["id"] if reversal else None,
        }
        return Compensation(status, summary, undid=reversal is not None)


class FakeEmailStep:
    """The email step over the fakes: confirm (retried forever), send the cancellation."""

    name = "email"

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

    async def compensate(self, ctx: SagaContext, result: dict[str, Any] | None) -> Compensation:
        if result is None:
            found = await self.services.find_email(
                checkout_id=ctx.checkout_id, template="order_confirmation"
            )
            if found is None:
                return Compensation(200, {"email_id": None}, undid=False)
            result = {"email_id": found["id"]}
        status, message = await self.services.send_email(
            checkout_id=ctx.checkout_id,
            template="order_cancelled",
            key=ctx.key(self.name, "cancellation"),
        )
        summary = {"email_id": result["email_id"], "cancellation_email_id": message["id"]}
        return Compensation(status, summary, undid=True)


def fake_steps(services: FakeServices) -> dict[str, SagaStep]:
    """The three steps over ``services``, by name."""
    steps: list[SagaStep] = [
        FakeWarehouseStep(services),
        FakeRewardsStep(services),
        FakeEmailStep(services),
    ]
    return {step.name: step for step in steps}
