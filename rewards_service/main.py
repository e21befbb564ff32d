"""Application factory of the rewards service: ``uvicorn rewards_service.main:create_app --factory``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

import anyio
from fastapi import FastAPI
from sqlalchemy import Engine, text

from rewards_service.api import router
from rewards_service.models import RewardsTable
from rewards_service.settings import Settings
from servicekit.app import create_service_app
from servicekit.db import create_sync_engine
from servicekit.health import health_router


class State(TypedDict):
    engine: Engine


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the rewards app; settings come from the environment unless given."""
    settings = settings or Settings()
    engine_holder: list[Engine] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        engine = create_sync_engine(settings.database_url)
        RewardsTable.metadata.create_all(engine)
        engine_holder.append(engine)
        yield {"engine": engine}
        engine_holder.clear()
        engine.dispose()

    async def check_database() -> None:
        def ping() -> None:
            with engine_holder[0].connect() as connection:
                connection.execute(text("SELECT 1"))

        await anyio.to_thread.run_sync(ping)

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
    app.include_router(router)
    app.include_router(health_router(check_database))
    return app
