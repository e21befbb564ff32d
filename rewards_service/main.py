"""Application factory of the rewards service: ``uvicorn rewards_service.main:create_app --factory``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import Depends, FastAPI

from rewards_service.api import router
from rewards_service.migrations import HISTORY
from rewards_service.settings import Settings
from servicekit.app import create_service_app
from servicekit.auth import service_token_guard
from servicekit.db.database import Database
from servicekit.health import health_router
from servicekit.observability import install_observability
from servicekit.service import open_database


class State(TypedDict):
    database: Database


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the rewards app; settings come from the environment unless given."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        async with open_database(settings.database_url, HISTORY, name="rewards") as database:
            yield {"database": database}

    app = create_service_app(
        title="Rewards service",
        version="1.0.0",
        description="Point accounts per customer and their ledger. A checkout is credited at most "
        "once and a credit reversed at most once, whatever the retries or the concurrency; the "
        "balance always equals the sum of the ledger.",
        lifespan=lifespan,
        openapi_tags=[
            {"name": "accounts", "description": "Point balances and the credits that build them."},
            {"name": "transactions", "description": "Ledger entries, and reversing a credit."},
            {"name": "health", "description": "Liveness and readiness probes."},
        ],
    )
    install_observability(app, service="rewards")
    app.include_router(
        router, dependencies=[Depends(service_token_guard("rewards", settings.service_token))]
    )
    app.include_router(health_router())
    return app
