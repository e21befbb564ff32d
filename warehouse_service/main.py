"""Application factory of the warehouse service: ``uvicorn warehouse_service.main:create_app --factory``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TypedDict

from fastapi import Depends, FastAPI

from servicekit.app import create_service_app
from servicekit.auth import service_token_guard
from servicekit.db.database import Database
from servicekit.health import health_router
from servicekit.observability import install_observability
from servicekit.service import open_database
from warehouse_service import inventory
from warehouse_service.api import router
from warehouse_service.migrations import HISTORY
from warehouse_service.settings import Settings


class State(TypedDict):
    database: Database


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the warehouse app; settings come from the environment unless given."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        async with open_database(settings.database_url, HISTORY, name="warehouse") as database:
            if settings.seed_demo_catalog:
                await database.run(partial(inventory.seed, catalog=inventory.DEMO_CATALOG))
            yield {"database": database}

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
    install_observability(app, service="warehouse")
    app.include_router(
        router, dependencies=[Depends(service_token_guard("warehouse", settings.service_token))]
    )
    app.include_router(health_router())
    return app
