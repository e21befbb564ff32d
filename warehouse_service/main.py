"""Application factory of the warehouse service: ``uvicorn warehouse_service.main:create_app --factory``."""

from __future__ import annotations

from fastapi import FastAPI

from servicekit.db.database import Database
from servicekit.service import service_app
from warehouse_service import inventory, reactions
from warehouse_service.api import router
from warehouse_service.migrations import HISTORY
from warehouse_service.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the warehouse app; settings come from the environment unless given."""
    settings = settings or Settings()

    async def seed_demo_catalog(database: Database) -> None:
        if settings.seed_demo_catalog:
            await database.run(lambda tx: inventory.seed(tx, catalog=inventory.DEMO_CATALOG))

    return service_app(
        service="warehouse",
        title="Warehouse service",
        description="Inventory per sku and reservations of stock per checkout. "
        "Reserving is all-or-nothing and never oversells, whatever the concurrency.",
        tags=[
            {"name": "reservations", "description": "Stock held for checkouts, and its release."},
            {"name": "inventory", "description": "On-hand and reserved units per sku."},
        ],
        router=router,
        service_token=settings.service_token,
        coordination=settings,
        reactions=reactions.reactions,
        database_url=settings.database_url,
        history=HISTORY,
        on_start=seed_demo_catalog,
    )
