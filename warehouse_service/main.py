"""Application factory of the warehouse service: ``uvicorn warehouse_service.main:create_app --factory``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

import anyio
from fastapi import FastAPI
from sqlalchemy import Engine, text
from sqlmodel import Session

from servicekit.app import create_service_app
from servicekit.db import create_sync_engine
from servicekit.health import health_router
from warehouse_service import store
from warehouse_service.api import router
from warehouse_service.models import WarehouseTable
from warehouse_service.settings import Settings


class State(TypedDict):
    engine: Engine


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the warehouse app; settings come from the environment unless given."""
    settings = settings or Settings()
    engine_holder: list[Engine] = []

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        engine = create_sync_engine(settings.database_url)
        WarehouseTable.metadata.create_all(engine)
        if settings.seed_demo_catalog:
            with Session(engine) as session:
                store.seed_catalog(session, store.DEMO_CATALOG)
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
        title="Warehouse service",
        version="1.0.0",
        description="Inventory per sku and reservations of stock per checkout. "
        "Reserving is all-or-nothing and never oversells, whatever the concurrency.",
        lifespan=lifespan,
        openapi_tags=[
            {"name": "reservations", "description": "Stock held for checkouts, and its release."},
            {"name": "inventory", "description": "On-hand and reserved units per sku."},
            {"name": "health", "description": "Liveness and readiness probes."},
        ],
    )
    app.include_router(router)
    app.include_router(health_router(check_database))
    return app
