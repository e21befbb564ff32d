"""Application factory of the rewards service: ``uvicorn rewards_service.main:create_app --factory``."""

from __future__ import annotations

from fastapi import FastAPI

from rewards_service import reactions
from rewards_service.api import router
from rewards_service.migrations import HISTORY
from rewards_service.settings import Settings
from servicekit.service import service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the rewards app; settings come from the environment unless given."""
    settings = settings or Settings()
    return service_app(
        service="rewards",
        title="Rewards service",
        description="Point accounts per customer and their ledger. A checkout is credited at most "
        "once and a credit reversed at most once, whatever the retries or the concurrency; the "
        "balance always equals the sum of the ledger.",
        tags=[
            {"name": "accounts", "description": "Point balances and the credits that build them."},
            {"name": "transactions", "description": "Ledger entries, and reversing a credit."},
        ],
        router=router,
        service_token=settings.service_token,
        coordination=settings,
        reactions=reactions.reactions,
        database_url=settings.database_url,
        history=HISTORY,
    )
